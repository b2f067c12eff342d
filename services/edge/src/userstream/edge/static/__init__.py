"""Files the edge serves as they are: the browser client (``client.js``) and the dev demo page."""
