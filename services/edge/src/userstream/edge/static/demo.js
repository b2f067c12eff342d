/* The demo page of `userstream dev`: /client.js in use, plus buttons that call the dev-only API. */
(function () {
  "use strict";

  var MAX_EVENTS = 200;
  var demo = { users: [], organizations: [], roles: [] };
  var stream = null;
  var userId = null;
  var memberships = {};
  var count = 0;

  function $(id) {
    return document.getElementById(id);
  }

  function api(method, path, body) {
    var init = { method: method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (payload) {
          if (!response.ok) throw new Error((payload.error && payload.error.message) || response.statusText);
          return payload;
        });
    });
  }

  function option(select, value, text) {
    var element = document.createElement("option");
    element.value = value;
    element.textContent = text;
    select.appendChild(element);
  }

  function organizationName(id) {
    for (var i = 0; i < demo.organizations.length; i++) {
      if (demo.organizations[i].id === id) return demo.organizations[i].name;
    }
    return id;
  }

  // -- the stream -----------------------------------------------------------------------------------

  function connectAs(user) {
    if (stream) stream.close();
    userId = user;
    memberships = {};
    count = 0;
    $("events").textContent = "";
    $("count").textContent = "0";
    renderMemberships();
    var about = demo.users.filter(function (u) { return u.id === user; })[0];
    $("user-about").textContent = about ? about.name + ": " + about.about : "";
    var url = new URL(location.href);
    url.searchParams.set("user", user);
    history.replaceState(null, "", url.href);
    document.title = "userstream demo: " + user;
    function fetchToken() {
      return api("GET", "/dev/token?user=" + encodeURIComponent(user)).then(function (r) {
        return r.token;
      });
    }
    var options = {
      key: user,
      token: fetchToken,
      onChange: onChange,
      onStatus: onStatus,
      onMustRefetch: function (reason) {
        note("must refetch (" + reason + "): reloading memberships, then live from now");
        return loadMemberships();
      },
      onClose: function (reason) {
        note("the server closed the stream (" + reason + "); resuming from the last cursor");
      },
    };
    if (new URL(location.href).searchParams.get("auth") === "cookie") {
      // ?auth=cookie: the token in the userstream_token cookie, as an application on the same site would
      // set it, and an EventSource without a token in its URL.
      options.token = undefined;
      fetchToken().then(function (token) {
        document.cookie = "userstream_token=" + token + "; path=/; SameSite=Strict";
        if (userId === user) stream = userstream.connect(options);
      });
    } else {
      stream = userstream.connect(options);
    }
    loadMemberships();
  }

  function onStatus(state) {
    var badge = $("status");
    badge.textContent = state.status;
    badge.className = "badge " + state.status;
    $("role").textContent =
      state.role === "leader" ? "leader: holds the stream" : "follower: the leader tab forwards the stream";
    $("cursor").textContent = state.cursor || "-";
    if (state.status === "live") loadMemberships();
  }

  function onChange(change) {
    count += 1;
    $("count").textContent = String(count);
    $("cursor").textContent = change.activityId;
    var item = document.createElement("li");
    item.dataset.cursor = change.activityId;
    item.dataset.type = change.type;
    item.dataset.organization = change.organizationId;
    var where = organizationName(change.organizationId);
    var text = change.type + "  " + where;
    if (change.resourceType === "membership") {
      item.className = "membership";
      var role = change.data && change.data.role;
      text += "  " + change.userId + (change.action === "delete" ? " left" : " is " + role);
      if (change.userId === userId) {
        if (change.action === "delete") delete memberships[change.organizationId];
        else memberships[change.organizationId] = role;
        renderMemberships();
        text += change.action === "delete" ? ": its events stop here" : ": its events start here";
      }
    } else if (change.entityType !== "organization") {
      text += "  " + change.entityType + " " + change.entityId;
    }
    if (change.changedKeys) text += "  [" + change.changedKeys.join(", ") + "]";
    if (change.tx && change.tx.sourceId) text += "  from " + change.tx.sourceId;
    item.textContent = change.activityId.slice(-6) + "  " + text;
    item.title = JSON.stringify(change, null, 2);
    prepend(item);
  }

  function note(text) {
    var item = document.createElement("li");
    item.className = "note";
    item.textContent = text;
    prepend(item);
  }

  function prepend(item) {
    var list = $("events");
    list.insertBefore(item, list.firstChild);
    while (list.childNodes.length > MAX_EVENTS) list.removeChild(list.lastChild);
  }

  // -- memberships ------------------------------------------------------------------------------------

  function loadMemberships() {
    var user = userId;
    return api("GET", "/dev/users/" + encodeURIComponent(user)).then(
      function (subject) {
        if (user !== userId) return;
        memberships = {};
        subject.memberships.forEach(function (m) {
          memberships[m.organizationId] = m.role;
        });
        renderMemberships();
      },
      function (error) {
        $("change-result").textContent = "could not load memberships: " + error.message;
      }
    );
  }

  function renderMemberships() {
    var list = $("memberships");
    list.textContent = "";
    var ids = Object.keys(memberships).sort();
    if (!ids.length) {
      var empty = document.createElement("li");
      empty.className = "muted";
      empty.textContent = "no memberships: only membership events reach this user";
      list.appendChild(empty);
    }
    ids.forEach(function (id) {
      var item = document.createElement("li");
      item.dataset.organization = id;
      var label = document.createElement("span");
      label.textContent = organizationName(id) + " (" + memberships[id] + ")";
      var revoke = document.createElement("button");
      revoke.textContent = "Revoke";
      revoke.onclick = function () {
        api("DELETE", "/dev/memberships/" + encodeURIComponent(userId) + "/" + encodeURIComponent(id)).then(
          done("revoked " + id),
          failed
        );
      };
      item.appendChild(label);
      item.appendChild(revoke);
      list.appendChild(item);
    });
  }

  function done(text) {
    return function (result) {
      $("change-result").textContent = text + " at cursor " + result.cursor;
    };
  }

  function failed(error) {
    $("change-result").textContent = error.message;
  }

  // -- changes ----------------------------------------------------------------------------------------

  function record(body) {
    if ($("echo").checked) body.sourceId = stream.sourceId;
    api("POST", "/dev/changes", body).then(done("recorded " + body.type), failed);
  }

  function editPage() {
    var organizationId = $("change-org").value;
    var organization = demo.organizations.filter(function (o) { return o.id === organizationId; })[0];
    var page = organization && organization.pages.length
      ? organization.pages[Math.floor(Math.random() * organization.pages.length)]
      : { id: organizationId + "-page", title: "A page" };
    record({
      type: "page.updated",
      organizationId: organizationId,
      entityId: page.id,
      userId: userId,
      data: { title: page.title, body: "edited on the demo page at " + new Date().toLocaleTimeString() },
      changedKeys: ["body"],
      changedField: "body",
    });
  }

  function updateOrganization() {
    var organizationId = $("change-org").value;
    record({
      type: "organization.updated",
      organizationId: organizationId,
      userId: userId,
      data: { name: organizationName(organizationId), note: "updated at " + new Date().toLocaleTimeString() },
      changedKeys: ["note"],
    });
  }

  // -- start ------------------------------------------------------------------------------------------

  function start(info) {
    demo = info;
    demo.users.forEach(function (u) {
      option($("user"), u.id, u.name + " (" + u.id + ")");
    });
    var organizations = demo.organizations.length ? demo.organizations : [{ id: "acme", name: "acme" }];
    organizations.forEach(function (o) {
      option($("grant-org"), o.id, o.name);
      option($("change-org"), o.id, o.name);
    });
    demo.roles.forEach(function (role) {
      option($("grant-role"), role, role);
    });
    $("grant-role").value = demo.roles.indexOf("member") >= 0 ? "member" : demo.roles[0];
    $("switch").onclick = function () {
      var other = $("user-other").value.trim();
      connectAs(other || $("user").value);
    };
    $("user").onchange = function () {
      $("user-other").value = "";
      connectAs($("user").value);
    };
    $("grant").onclick = function () {
      var organizationId = $("grant-org").value;
      api("POST", "/dev/memberships", {
        userId: userId,
        organizationId: organizationId,
        role: $("grant-role").value,
      }).then(done("granted " + organizationId), failed);
    };
    $("change-page").onclick = editPage;
    $("change-org-name").onclick = updateOrganization;

    var requested = new URL(location.href).searchParams.get("user");
    var first = requested || (demo.users[0] && demo.users[0].id) || "alice";
    if (demo.users.some(function (u) { return u.id === first; })) $("user").value = first;
    else $("user-other").value = first;
    connectAs(first);
  }

  api("GET", "/dev/demo").then(start, function (error) {
    document.body.insertAdjacentText("afterbegin", "The dev API did not answer: " + error.message);
  });
})();
