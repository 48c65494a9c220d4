// Staff pages refresh themselves when a ticket event arrives (a new ticket, a message, a reply, a claim),
// unless staff are in the middle of typing a reply.
(function () {
  "use strict";
  var main = document.querySelector("[data-live]");
  if (!main || !window.EventSource) { return; }
  var ticket = main.getAttribute("data-ticket");
  var es = new EventSource("/staff/events");
  es.onmessage = function (ev) {
    var e = JSON.parse(ev.data);
    if (ticket && e.ticket !== ticket) { return; }
    var box = document.getElementById("reply-text");
    if (box && box.value.trim() !== "") { return; }
    location.reload();
  };
})();
