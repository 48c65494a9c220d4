// The web chat: posts what the person types to /api/chat/messages and shows the chat's messages as they arrive
// on /api/chat/events (server-sent events; the browser reconnects by itself and resumes where it left off).
(function () {
  "use strict";
  var log = document.getElementById("log");
  var form = document.getElementById("ask");
  var text = document.getElementById("text");
  var status = document.getElementById("status");
  var chat = localStorage.getItem("csrdesk_chat");

  function say(msg) { status.textContent = msg || ""; }

  function post(body) {
    body.chat = chat;
    body.lang = navigator.language || "";
    return fetch("/api/chat/messages", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      if (r.ok) { say(""); return; }
      return r.json().then(function (e) { say(e.error || "Something went wrong."); },
                          function () { say("Something went wrong (" + r.status + ")."); });
    }, function () { say("No connection. Please try again."); });
  }

  function show(item) {
    var li = document.createElement("li");
    li.className = "msg " + (item.from === "user" ? "user" : item.from === "staff" ? "staff" : "bot");
    var body = document.createElement("div");
    body.className = "body";
    if (item.from === "user") {
      body.textContent = item.text;          // what people type is never parsed as HTML
    } else {
      body.innerHTML = item.html;            // rendered by the server from Markdown, raw HTML dropped
      body.querySelectorAll("a").forEach(function (a) { a.target = "_blank"; a.rel = "noopener noreferrer"; });
    }
    li.appendChild(body);
    (item.buttons || []).forEach(function (row) {
      var div = document.createElement("div");
      div.className = "buttons";
      row.forEach(function (b) {
        var btn = document.createElement("button");
        btn.type = "button";
        btn.textContent = b.Label;
        btn.addEventListener("click", function () { post({ data: b.Data, label: b.Label }); });
        div.appendChild(btn);
      });
      li.appendChild(div);
    });
    log.appendChild(li);
    li.scrollIntoView({ block: "end" });
  }

  function listen() {
    var es = new EventSource("/api/chat/events?chat=" + encodeURIComponent(chat));
    es.onmessage = function (ev) { show(JSON.parse(ev.data)); };
    es.onerror = function () { say(es.readyState === EventSource.CONNECTING ? "Reconnecting…" : "Disconnected."); };
    es.onopen = function () { say(""); };
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var q = text.value.trim();
    if (!q) { return; }
    text.value = "";
    post({ text: q });
  });
  text.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
  });

  function start() {
    listen();
    if (!localStorage.getItem("csrdesk_greeted")) {
      localStorage.setItem("csrdesk_greeted", "1");
      post({ text: "/start" });
    }
  }

  if (chat && /^[0-9a-f]{32}$/.test(chat)) {
    start();
  } else {
    fetch("/api/chat/session", { method: "POST" }).then(function (r) { return r.json(); }).then(function (s) {
      chat = s.chat;
      localStorage.setItem("csrdesk_chat", chat);
      localStorage.removeItem("csrdesk_greeted");
      start();
    }, function () { say("The help desk cannot be reached. Please try again later."); });
  }
})();
