// The live board: socket events are hints. On any event, and on every (re)connection,
// fetch the page's fragment again from the server, which is the record.
(function () {
  "use strict";
  // A form that sends something to many people names its audience before it goes, and
  // goes once: its button is disabled by the first click (a double click sends nothing
  // twice; the server also answers a repeat with what the first click did).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); return; }
    if (question) {
      Array.prototype.forEach.call(form.querySelectorAll("button[type=submit]"), function (b) {
        b.disabled = true;
      });
    }
  });
  // A line being typed (an alert's own line, an update's note, a correction's reason):
  // its characters and what the whole message will cost, as it is typed. The server
  // draws the rest of the message's length (data-sms-rest); SMS counts GSM-7 septets,
  // a few characters twice, and anything outside GSM-7 makes the text UCS-2.
  var GSM7 = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM7_TWICE = "^{}\\[~]|€";
  var NOTE_MOST = 80;

  function septets(text) {
    var count = 0;
    var folded = text.normalize("NFD").replace(/[\u0300-\u036f]/g, "")
      .replace(/[\u2018\u2019]/g, "'").replace(/[\u201c\u201d]/g, '"').replace(/[\u2013\u2014]/g, "-");
    for (var i = 0; i < folded.length; i++) {
      var c = folded.charAt(i);
      if (GSM7.indexOf(c) >= 0) { count += 1; }
      else if (GSM7_TWICE.indexOf(c) >= 0) { count += 2; }
      else { return null; }  // UCS-2: the server refuses it
    }
    return count;
  }

  function countLine(field) {
    var out = document.getElementById(field.id + "-cost");
    if (!out) { return; }
    var text = field.value.replace(/\s+/g, " ").trim();
    if (!text) { out.textContent = ""; return; }
    var own = septets(text);
    if (own === null) { out.textContent = out.getAttribute("data-ucs2"); return; }
    if (own > NOTE_MOST) { out.textContent = out.getAttribute("data-long").replace("{most}", NOTE_MOST); return; }
    var whole = parseInt(field.getAttribute("data-sms-rest"), 10) + own + 2;
    var segments = whole <= 160 ? 1 : Math.ceil(whole / 153);
    out.textContent = out.getAttribute(segments === 1 ? "data-one" : "data-many")
      .replace("{chars}", own).replace("{most}", NOTE_MOST).replace("{segments}", segments);
  }

  function countAll() {
    Array.prototype.forEach.call(document.querySelectorAll("input[data-sms-rest]"), countLine);
  }
  document.addEventListener("input", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-sms-rest")) { countLine(event.target); }
  });
  countAll();

  var live = document.getElementById("live");
  var status = document.getElementById("connection");
  if (!live || typeof io === "undefined") { return; }
  var url = live.getAttribute("data-live-url");
  // The socket server: a proxy routes it under our own origin, or it has its own port.
  var socketUrl = live.getAttribute("data-socket-url") || undefined;
  var pending = null;
  // While the server says it is busy (503), re-reads pause, longer each time (up to 30 s,
  // a random part so that fifty boards do not come back at the same moment).
  var busyPause = 0;
  var inFlight = false;
  var again = false;
  // The ETag of the fragment shown: a re-read that hears 304 has the record already (the
  // counts of a broadcast come on the socket and are drawn in place, see showProgress).
  var shownTag = null;
  var shownHtml = null;
  // Whether the next re-read must bring the whole fragment: on (re)connection and the
  // half-minute read, in case an event was lost on the way.
  var whole = true;
  // The newest hint heard (each carries the count of hints published, live_version): a
  // render made since it has what it announced, and the server serves one to all boards.
  var heard = 0;
  // Re-reads the page does by itself must not keep the session alive: the idle timeout
  // is for the person. Only a re-read after they touched the page counts as activity.
  var touched = false;
  ["pointerdown", "keydown", "wheel", "touchstart"].forEach(function (type) {
    document.addEventListener(type, function () { touched = true; }, { passive: true });
  });

  function show(state) {
    if (!status) { return; }
    status.setAttribute("data-state", state);
    status.textContent = status.getAttribute("data-label-" + state) || state;
  }

  // What a dispatcher is typing or choosing in a form of the fragment survives its
  // re-read: a field changed from what the server drew keeps its value, and the field
  // being typed in keeps the focus and the caret.
  function fieldKey(field) {
    if (field.id) { return "#" + field.id; }
    return field.form && field.form.id && field.name ? field.form.id + ":" + field.name : null;
  }

  function changed(field) {
    if (field.type === "hidden") { return false; }
    if (field.type === "checkbox" || field.type === "radio") { return field.checked !== field.defaultChecked; }
    if (field.tagName === "SELECT") {
      return Array.prototype.some.call(field.options, function (o) { return o.selected !== o.defaultSelected; });
    }
    return field.value !== field.defaultValue;
  }

  function keepTyped() {
    var kept = { values: {}, focus: null, caret: null };
    Array.prototype.forEach.call(live.querySelectorAll("input, select, textarea"), function (field) {
      var key = fieldKey(field);
      if (key && changed(field)) {
        kept.values[key] = field.type === "checkbox" || field.type === "radio" ? field.checked : field.value;
      }
    });
    var active = document.activeElement;
    if (active && live.contains(active) && fieldKey(active)) {
      kept.focus = fieldKey(active);
      try { kept.caret = [active.selectionStart, active.selectionEnd]; } catch (e) { kept.caret = null; }
    }
    return kept;
  }

  function putBack(kept) {
    Array.prototype.forEach.call(live.querySelectorAll("input, select, textarea"), function (field) {
      var key = fieldKey(field);
      if (!key || !(key in kept.values)) { return; }
      if (field.type === "checkbox" || field.type === "radio") { field.checked = kept.values[key]; }
      else { field.value = kept.values[key]; }
    });
    if (!kept.focus) { return; }
    var again = Array.prototype.filter.call(live.querySelectorAll("input, select, textarea"), function (field) {
      return fieldKey(field) === kept.focus;
    })[0];
    if (again) {
      again.focus();
      if (kept.caret && kept.caret[0] !== null) {
        try { again.setSelectionRange(kept.caret[0], kept.caret[1]); } catch (e) { /* not a text field */ }
      }
    }
  }

  // Whether a fragment draws what the board shows already (the page's first drawing is
  // the server's too, so the read at connection usually changes nothing).
  function sameAsShown(html) {
    var parsed = document.createElement("template");
    parsed.innerHTML = html;
    return parsed.innerHTML === live.innerHTML;
  }

  function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    var headers = { "Accept": "text/html" };
    if (!touched) {
      headers["X-Board-Refresh"] = "background";
      if (shownTag && !whole) { headers["If-None-Match"] = shownTag; }
      if (heard && !whole) { headers["X-Live-Version"] = String(heard); }
    }
    touched = false;
    whole = false;
    // The board's own fragment may come from the socket server's port: the session
    // cookie goes there too ("include"; the server allows only our page's origin).
    fetch(url, { credentials: "include", headers: headers, redirect: "manual", cache: "no-store" })
      .then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 401 || response.status === 403) {
          window.location.reload();  // signed out or revoked: the server shows the way in
          return null;
        }
        if (response.headers.get("X-Sealed")) {
          window.location.reload();  // sealed: the server shows the sealed page, nothing else
          return null;
        }
        if (response.status === 503) { backOff(response); return null; }
        var answered = response.ok || response.status === 304;
        if (answered && busyPause) {
          busyPause = 0;
          show(socket.connected ? "connected" : "disconnected");
        }
        if (response.status === 304) {  // what is shown is the record
          live.setAttribute("data-synced", String(Date.now()));
          return null;
        }
        if (response.ok) { shownTag = response.headers.get("ETag"); }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        // The same fragment again (a whole read, or a render for another board's
        // hint) is not drawn again: a click on a button being replaced would be lost.
        if (html !== null && (html === shownHtml || sameAsShown(html))) {
          live.setAttribute("data-synced", String(Date.now()));
        } else if (html !== null) {
          shownHtml = html;
          var typed = keepTyped();
          live.innerHTML = html;
          putBack(typed);
          countAll();
          live.setAttribute("data-synced", String(Date.now()));
        }
      })
      .catch(function () { /* offline for a moment: the next event or reconnection retries */ })
      .then(function () {
        inFlight = false;
        if (again) { again = false; soon(); }
      });
  }

  // Every open board hears a hint at the same moment: each waits a random part of a
  // second before re-reading, so that fifty boards do not all ask in the same instant
  // (they share one render on the server either way).
  function soon() {
    if (pending !== null) { return; }
    var wait = 250 + Math.round(750 * Math.random()) + busyPause;
    pending = window.setTimeout(function () { pending = null; refresh(); }, wait);
  }

  function backOff(response) {
    var asked = 1000 * (parseInt(response.headers.get("Retry-After"), 10) || 1);
    busyPause = Math.min(30000, Math.max(asked, 2 * busyPause));
    busyPause = Math.round(busyPause * (0.75 + 0.5 * Math.random()));
    show("busy");
    again = true;  // the record moved on without us: read it once the pause is over
  }

  // Draws an alert's counts in its bars; whether the board has any (else it re-reads).
  function showProgress(data) {
    var bars = live.querySelectorAll('.progress[data-alert-id="' + data.alert_id + '"]');
    Array.prototype.forEach.call(bars, function (bar) {
      var meter = bar.querySelector("progress");
      var done = data.total - data.pending;
      if (meter) { meter.max = data.total || 1; meter.value = data.total ? done : 1; }
      var percent = bar.querySelector(".percent");
      var value = data.total ? Math.round(100 * done / data.total) : 100;
      if (percent) { percent.textContent = value + "%"; percent.setAttribute("data-percent", String(value)); }
      ["sent", "delivered", "failed", "expired", "pending", "total"].forEach(function (field) {
        var number = bar.querySelector('[data-count="' + field + '"]');
        if (number && typeof data[field] === "number") { number.textContent = String(data[field]); }
      });
    });
    return bars.length > 0;
  }

  var socket = io(socketUrl, {
    transports: ["websocket", "polling"],
    withCredentials: true,  // the session cookie, when the socket server has its own port
    reconnectionDelayMax: 30000,  // a busy or restarting server is not hammered
    randomizationFactor: 0.5
  });
  socket.on("connect", function () { show("connected"); whole = true; refresh(); });
  socket.on("disconnect", function (reason) {
    show("disconnected");
    soon();  // a seal, or a restart: the re-read says which
    if (reason === "io server disconnect") { window.location.reload(); }  // the session ended
  });
  socket.on("connect_error", function (error) {
    show(error && error.message === "busy" ? "busy" : "disconnected");
    soon();  // each retry (spaced by the back-off above) also asks the page: sealed?
  });
  socket.onAny(function (event, data) {
    if (data && typeof data.live_version === "number") { heard = Math.max(heard, data.live_version); }
    // A broadcast's progress, every second while it goes out: its numbers are all that
    // changed, drawn here. Only an alert this board has no bar for yet is read.
    if (event === "alert_progress" && data && showProgress(data)) { return; }
    soon();
  });
  // A quiet board still re-reads now and then: ages move on, and a lost event is found.
  window.setInterval(function () { whole = true; soon(); }, 30000);
  // For the browser tests (and a curious dispatcher's console): the socket, to cut it.
  window.rrBoard = { socket: socket };
}());
