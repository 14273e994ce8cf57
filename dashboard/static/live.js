// The overview, live: the server pushes the rendered overview over server-sent events (one stream per page,
// sent when jobs change and at most once a second); this swaps it in. Without script the page still works.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var source = new EventSource(live.getAttribute("data-stream"));
  source.addEventListener("overview", function (message) {
    var update = JSON.parse(message.data);
    if (Number(update.version) <= Number(live.getAttribute("data-version"))) { return; }
    live.innerHTML = update.html;
    live.setAttribute("data-version", String(update.version));
    if (status) { status.textContent = "live"; }
  });
  source.onerror = function () { if (status) { status.textContent = "reconnecting"; } };
})();
