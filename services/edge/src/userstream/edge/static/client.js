/*
 * userstream browser client, served by the edge at /client.js. No dependencies.
 *
 *   <script src="https://edge.example/client.js"></script>
 *   const stream = userstream.connect({
 *     url: "https://edge.example/me/stream",   // default: /me/stream on this page's origin
 *     key: currentUserId,                      // required: tabs with the same key (and origin) share
 *                                              // one stream, so it must name the signed-in user
 *     token: () => fetchStreamToken(),         // a string, or a function (may return a Promise);
 *                                              // omitted: the `userstream_token` cookie, or the
 *                                              // application's session cookie (the edge's session hook);
 *                                              // a `token-expired` close then simply reconnects
 *     withCredentials: "auto",                 // cookies cross-origin: "auto" (default), true, false
 *     sourceId: mySourceId,                    // changes whose tx.sourceId is this are not delivered
 *     onChange(change) {},                     // every permitted change, in order, once
 *     onStatus({ status, role, cursor }) {},   // connecting | live | reconnecting | closed; leader | follower
 *     onMustRefetch(reason) {},                // reload your state (may return a Promise); then live from now
 *     onClose(reason) {},                      // the server ended the stream (it resumes by itself)
 *   });
 *   stream.close();
 *
 * One tab holds the stream: the tabs of one origin elect a leader with the Web
 * Locks API; the leader's EventSource events are forwarded to the other tabs
 * over a BroadcastChannel. When the leader's tab closes, a follower takes the
 * lock and resumes from the cursor the leader persisted in localStorage, so
 * nothing is lost or repeated. The cursor survives reloads the same way.
 * EventSource cannot send headers: the token goes in the `access_token` query
 * parameter, the resume position in `offset` (a new EventSource has no
 * Last-Event-ID). Without Web Locks or BroadcastChannel every tab holds its own
 * stream.
 */
(function (global) {
  "use strict";

  var VERSION = "1";
  var DEFAULTS = {
    url: "/me/stream",
    initialDelay: 500, // ms before the first reconnect after a failure; doubles up to maxDelay
    maxDelay: 30000,
    closeDelay: 3000, // ms before reconnecting after the server's `close` (shutdown, slow-consumer)
    // Send cookies with the stream (a session, or the userstream_token cookie): "auto" does when the
    // stream is on another origin than the page (the edge must list the page in USERSTREAM_CORS_ORIGINS).
    withCredentials: "auto",
  };

  function randomId() {
    if (global.crypto && global.crypto.randomUUID) return global.crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function jitter(ms) {
    return Math.round(ms * (0.5 + Math.random() * 0.5));
  }

  function storage() {
    try {
      return global.localStorage || null;
    } catch (error) {
      return null; // storage disabled: the cursor lives as long as the page
    }
  }

  function connect(userOptions) {
    var options = {};
    var name;
    for (name in DEFAULTS) options[name] = DEFAULTS[name];
    for (name in userOptions || {}) options[name] = userOptions[name];

    // No default: with one shared key, a tab signed in as B would follow the stream of A's tab.
    if (typeof options.key !== "string" || options.key === "") {
      throw new TypeError("userstream.connect: `key` is required, e.g. the signed-in user's id");
    }
    var streamUrl = new URL(options.url, global.location.href);
    var withCredentials =
      options.withCredentials === "auto" ? streamUrl.origin !== global.location.origin : !!options.withCredentials;
    var scope = streamUrl.origin + streamUrl.pathname + "|" + options.key;
    var cursorKey = "userstream:cursor:" + scope;
    var sourceId = options.sourceId || randomId();
    var store = storage();
    var canShare = !!(global.navigator && global.navigator.locks && global.BroadcastChannel);

    var self = {
      sourceId: sourceId,
      role: canShare ? "follower" : "leader",
      status: "connecting",
      cursor: readCursor(),
      close: close,
    };
    var closed = false;
    var source = null; // the leader's EventSource
    var timer = null;
    var failures = 0;
    var memoryCursor = null;
    var releaseLock = null;
    var lockAbort = null;
    var channel = canShare ? new global.BroadcastChannel("userstream:" + scope) : null;

    function readCursor() {
      if (store) return store.getItem(cursorKey);
      return memoryCursor;
    }

    function saveCursor(cursor) {
      self.cursor = cursor;
      if (store) {
        if (cursor === null) store.removeItem(cursorKey);
        else store.setItem(cursorKey, cursor);
      } else {
        memoryCursor = cursor;
      }
    }

    function call(handler, argument) {
      if (typeof handler !== "function") return undefined;
      try {
        return handler(argument);
      } catch (error) {
        setTimeout(function () {
          throw error; // reported, but never breaks the stream
        });
        return undefined;
      }
    }

    // What every tab does with a message, the leader's own or forwarded.
    function dispatch(message) {
      if (closed) return;
      if (message.kind === "change") {
        self.cursor = message.change.activityId;
        var tx = message.change.tx;
        if (tx && tx.sourceId === sourceId) return; // the echo of this tab's own write
        call(options.onChange, message.change);
      } else if (message.kind === "status") {
        self.status = message.status;
        if (message.cursor !== undefined) self.cursor = message.cursor;
        call(options.onStatus, { status: self.status, role: self.role, cursor: self.cursor });
      } else if (message.kind === "must-refetch") {
        self.cursor = null;
        return call(options.onMustRefetch, message.reason);
      } else if (message.kind === "close") {
        call(options.onClose, message.reason);
      }
      return undefined;
    }

    // The leader: handle locally, then forward to the other tabs.
    function publish(message) {
      var result = dispatch(message);
      if (channel) channel.postMessage(message);
      return result;
    }

    function setStatus(status) {
      self.status = status;
      publish({ kind: "status", status: status, cursor: self.cursor });
    }

    // -- the leader's connection ---------------------------------------------------------------

    function token() {
      var value = options.token;
      if (typeof value === "function") value = value();
      return Promise.resolve(value);
    }

    function open() {
      timer = null;
      if (closed) return;
      token().then(
        function (value) {
          if (closed) return;
          var url = new URL(streamUrl.href);
          if (value) url.searchParams.set("access_token", value);
          url.searchParams.set("offset", readCursor() || "now");
          source = new global.EventSource(url.href, { withCredentials: withCredentials });
          source.addEventListener("change", onChangeEvent);
          source.addEventListener("offset", onOffsetEvent);
          source.addEventListener("must-refetch", onMustRefetchEvent);
          source.addEventListener("close", onCloseEvent);
          source.onerror = onError;
        },
        function () {
          retry(); // the token callback failed: try again later
        }
      );
    }

    function stopSource() {
      if (source) {
        source.onerror = null;
        source.close();
        source = null;
      }
    }

    function reconnect(delay, status) {
      stopSource();
      if (closed || timer) return;
      setStatus(status || "reconnecting");
      timer = setTimeout(open, delay);
    }

    function retry() {
      failures += 1;
      var delay = Math.min(options.maxDelay, options.initialDelay * Math.pow(2, failures - 1));
      reconnect(jitter(delay));
    }

    function onChangeEvent(event) {
      var change = JSON.parse(event.data);
      saveCursor(event.lastEventId || change.activityId); // persisted before any tab sees it
      publish({ kind: "change", change: change });
    }

    function onOffsetEvent(event) {
      var offset = JSON.parse(event.data);
      failures = 0;
      saveCursor(event.lastEventId || offset.cursor);
      setStatus("live");
    }

    function onMustRefetchEvent(event) {
      var reason = JSON.parse(event.data).reason;
      stopSource();
      saveCursor(null);
      var refetched = publish({ kind: "must-refetch", reason: reason });
      Promise.resolve(refetched).then(
        function () {
          reconnect(0, "connecting");
        },
        function () {
          reconnect(0, "connecting");
        }
      );
    }

    function onCloseEvent(event) {
      var reason = JSON.parse(event.data).reason;
      // A `close` with an id rewinds the cursor (reason "resync"): resume from there.
      if (event.lastEventId) saveCursor(event.lastEventId);
      stopSource();
      publish({ kind: "close", reason: reason });
      // token-expired: the next open() asks options.token for a new one at once.
      reconnect(reason === "token-expired" ? 0 : jitter(options.closeDelay));
    }

    function onError() {
      // A dropped connection or a refusal (401, 429, 503): reconnect ourselves, with a fresh
      // token and the persisted cursor, instead of letting EventSource retry the same URL.
      retry();
    }

    // -- leadership ------------------------------------------------------------------------------

    function becomeLeader() {
      return new Promise(function (resolve) {
        releaseLock = resolve;
        if (closed) {
          resolve();
          return;
        }
        self.role = "leader";
        self.cursor = readCursor();
        setStatus("connecting");
        open();
      });
    }

    function close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      stopSource();
      self.status = "closed";
      if (releaseLock) releaseLock();
      if (lockAbort) lockAbort.abort();
      if (channel) channel.close();
      call(options.onStatus, { status: "closed", role: self.role, cursor: self.cursor });
    }

    if (canShare) {
      channel.onmessage = function (event) {
        var message = event.data;
        if (self.role === "leader") {
          // A new follower asks where the stream stands.
          if (message && message.kind === "hello") {
            channel.postMessage({ kind: "status", status: self.status, cursor: self.cursor });
          }
          return;
        }
        if (message && message.kind !== "hello") dispatch(message);
      };
      lockAbort = new AbortController();
      global.navigator.locks
        .request("userstream:leader:" + scope, { signal: lockAbort.signal }, becomeLeader)
        .catch(function () {
          /* aborted by close() before this tab became the leader */
        });
      if (self.role !== "leader") {
        call(options.onStatus, { status: self.status, role: self.role, cursor: self.cursor });
        channel.postMessage({ kind: "hello" });
      }
      global.addEventListener("pagehide", close);
    } else {
      becomeLeader();
    }
    return self;
  }

  global.userstream = { connect: connect, version: VERSION };
})(typeof self !== "undefined" ? self : this);
