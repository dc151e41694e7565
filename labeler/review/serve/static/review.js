// labeler review: the keyboard. Every key presses one of the page's own buttons, so the page works without
// this file too. Keys: 1..9, 0 a label; Enter accept the LLM's label (when shown); s skip; u undo; n note.
// Multi-label tasks: 1..9, 0 tick or untick a label, Enter submits the ticked set. r: the correction reason
// (arrow keys choose, Esc leaves), sent with the next answer.
// Data never passes through this script: it only clicks buttons and moves focus.
"use strict";
(function () {
  let busy = false;
  function flash(text) {
    const el = document.getElementById("flash");
    if (el) el.textContent = text;
  }
  function press(button) {
    if (!button || busy) return;
    busy = true; // one submission per page: a held key or a double press sends nothing twice
    button.form.requestSubmit(button);
  }
  function formButton(id) {
    const form = document.getElementById(id);
    return form ? form.querySelector("button[type=submit]") : null;
  }
  function submitButton() {
    return document.getElementById("accept") || document.getElementById("submit");
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && t.tagName === "SELECT") {
      if (e.key === "Escape" || e.key === "Enter") { t.blur(); e.preventDefault(); }
      return;
    }
    if (t && t.tagName === "TEXTAREA") {
      if (e.key === "Escape") { t.blur(); e.preventDefault(); }
      else if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        const accept = submitButton();
        if (accept) press(accept); else { t.blur(); flash("note kept: now choose a label with its number"); }
      }
      return;
    }
    const k = e.key;
    if (/^[0-9]$/.test(k)) {
      const box = document.querySelector('#answer input[type=checkbox][data-key="' + k + '"]');
      if (box) { e.preventDefault(); box.checked = !box.checked; return; }
      const b = document.querySelector('#answer button[data-key="' + k + '"]');
      if (b) { e.preventDefault(); press(b); }
    } else if (k === "Enter") {
      e.preventDefault();
      const accept = submitButton();
      if (accept) press(accept); else flash("no suggestion on this item: choose a label with its number");
    } else if (k === "s") { e.preventDefault(); press(formButton("skip")); }
    else if (k === "u") { e.preventDefault(); press(formButton("undo")); }
    else if (k === "r") {
      const reason = document.getElementById("reason");
      if (reason) { e.preventDefault(); reason.focus(); }
    } else if (k === "n") {
      const note = document.getElementById("note");
      if (note) { e.preventDefault(); note.focus(); }
    }
  });
  window.addEventListener("pageshow", function () { busy = false; });
})();
