// Keyboard shortcuts for the review app. An enhancement only: every action is
// also a link or a form button, and nothing here is needed to use the app.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  function typing(el) {
    if (!el) { return false; }
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") { return true; }
    return el.tagName === "INPUT" && !/^(radio|checkbox|button|submit|reset)$/.test(el.type);
  }
  function go(id) {
    var a = document.getElementById(id);
    if (a && a.href) { window.location.href = a.href; return true; }
    return false;
  }
  function pick(id) {
    var r = document.getElementById(id);
    if (r) { r.checked = true; r.focus(); return true; }
    return false;
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) {
      if (e.key === "Escape" && typing(e.target)) { e.target.blur(); }
      return;
    }
    var done = false;
    switch (e.key) {
      case "r": done = pick("label-risk"); break;
      case "n": done = pick("label-no_risk"); break;
      case "u": done = pick("label-undecided"); break;
      case "s":
        var b = document.getElementById("save-next");
        if (b) { b.form.requestSubmit(b); done = true; }
        break;
      case "j": done = go("next-alert") || go("next-page"); break;
      case "k": done = go("prev-alert") || go("prev-page"); break;
      case "b": done = go("back"); break;
      case "c":
        var c = document.getElementById("comment");
        if (c) { c.focus(); done = true; }
        break;
      case "/":
        var q = document.getElementById("q");
        if (q) { q.focus(); done = true; }
        break;
      case "?":
        var h = document.getElementById("key-help");
        if (h) { h.hidden = !h.hidden; done = true; }
        break;
    }
    if (done) { e.preventDefault(); }
  });
})();
