// labeler review: the keyboard. Every key presses one of the page's own buttons, so the page works without
// this file too. Keys: 1..9, 0 a label; Enter accept the LLM's label (when shown); s skip; u undo; n note.
// Multi-label tasks: 1..9, 0 tick or untick a label, Enter submits the ticked set. r: the correction reason
// (arrow keys choose, Esc leaves), sent with the next answer. Span tasks: select text, 1..9, 0 mark it as that
// type, Backspace takes the last span off, Enter submits. The text is drawn with textContent only.
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
  // spans: the marked spans live in the hidden field as JSON, offsets in code points of the original text
  const textEl = document.getElementById("text");
  const field = document.getElementById("spans-field");
  let spans = [];
  let original = "";
  let points = [];
  function render() {
    spans.sort(function (a, b) { return a.start - b.start || a.end - b.end; });
    field.value = JSON.stringify(spans);
    textEl.textContent = "";
    let at = 0;
    for (const s of spans) {
      if (s.start < at) continue; // an overlapping span is listed below, not drawn
      textEl.append(points.slice(at, s.start).join(""));
      const mark = document.createElement("mark");
      mark.dataset.type = s.type;
      mark.title = s.type;
      mark.textContent = points.slice(s.start, s.end).join("");
      textEl.append(mark);
      at = s.end;
    }
    textEl.append(points.slice(at).join(""));
    const list = document.getElementById("span-list");
    list.textContent = "";
    for (const s of spans) {
      const li = document.createElement("li");
      li.textContent = s.type + ": " + points.slice(s.start, s.end).join("");
      list.append(li);
    }
  }
  function codePoints(units) { return Array.from(original.slice(0, units)).length; }
  function selection() {
    const sel = window.getSelection();
    if (!sel || !sel.rangeCount || sel.isCollapsed) return null;
    const r = sel.getRangeAt(0);
    if (!textEl.contains(r.startContainer) || !textEl.contains(r.endContainer)) return null;
    const before = document.createRange();
    before.selectNodeContents(textEl);
    before.setEnd(r.startContainer, r.startOffset);
    const a = before.toString().length;
    return [codePoints(a), codePoints(a + r.toString().length)];
  }
  function mark(type) {
    const s = selection();
    if (!s || s[0] === s[1]) { flash("select some of the text first, then press the type's number"); return; }
    spans.push({ start: s[0], end: s[1], type: type });
    window.getSelection().removeAllRanges();
    render();
  }
  if (textEl && field) {
    original = JSON.parse(textEl.dataset.text);
    points = Array.from(original);
    spans = JSON.parse(field.value || "[]");
    render();
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
    if (/^[0-9]$/.test(k) && field) {
      const type = document.querySelector('#answer .type[data-key="' + k + '"]');
      if (type) { e.preventDefault(); mark(type.dataset.type); }
    } else if (k === "Backspace" && field) {
      e.preventDefault();
      if (spans.length) { spans.pop(); render(); }
    } else if (/^[0-9]$/.test(k)) {
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
