// Moked CRM: our own small script. No service worker is registered (none is needed); if one
// ever is, it must bypass /webhook/* and *.mp3 (see docs).
(function () {
  "use strict";
  // Styles that need the script (e.g. bulk actions shown once a call is checked) key on it.
  document.documentElement.classList.add("js");

  var INBOX_INTERVAL_MS = 8000;
  var CALL_INTERVAL_MS = 5000;

  function announce(text) {
    var live = document.getElementById("live-status");
    if (live) { live.textContent = text; }
  }

  function fetchFragment(url) {
    return fetch(url, {
      credentials: "same-origin",
      headers: { "X-Requested-With": "fetch", "Accept": "text/html" },
      cache: "no-store"
    }).then(function (response) {
      if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    });
  }

  function sids(root) {
    return Array.prototype.map.call(root.querySelectorAll("[data-call-sid]"), function (row) {
      return row.getAttribute("data-call-sid");
    });
  }

  // Inbox bulk bar: the rows' .row-select checkboxes (form="bulk-form"), "check all on this
  // page", and how many are checked. The list is re-rendered by the poll: checks survive it.
  function checkedSids(list) {
    return Array.prototype.map.call(list.querySelectorAll(".row-select:checked"), function (box) {
      return box.value;
    });
  }

  function restoreChecked(list, checked) {
    list.querySelectorAll(".row-select").forEach(function (box) {
      box.checked = checked.indexOf(box.value) !== -1;
    });
    updateSelection();
  }

  function updateSelection() {
    var list = document.getElementById("call-list");
    var bar = document.getElementById("bulk-form");
    if (!list || !bar) { return; }
    var boxes = list.querySelectorAll(".row-select");
    var count = 0;
    boxes.forEach(function (box) {
      var row = box.closest(".call-row");
      if (row) { row.classList.toggle("is-selected", box.checked); }
      if (box.checked) { count += 1; }
    });
    var all = document.getElementById("select-all");
    if (all) {
      all.checked = boxes.length > 0 && count === boxes.length;
      all.indeterminate = count > 0 && count < boxes.length;
    }
    var label = document.getElementById("bulk-count");
    if (label) {
      label.textContent = count ? label.getAttribute("data-some").replace("{count}", count)
        : label.getAttribute("data-none");
    }
    bar.classList.toggle("has-selection", count > 0);
  }

  function bulkSelection() {
    document.addEventListener("change", function (event) {
      var target = event.target;
      if (target.id === "select-all") {
        var list = document.getElementById("call-list");
        if (list) {
          list.querySelectorAll(".row-select").forEach(function (box) { box.checked = target.checked; });
        }
        updateSelection();
      } else if (target.classList && target.classList.contains("row-select")) {
        updateSelection();
      }
    });
    updateSelection();
  }

  // The saved views' counts (tabs above the list) follow the polled counters.
  function refreshViewCounts(list) {
    var kpis = list.querySelector(".kpis");
    if (!kpis) { return; }
    document.querySelectorAll("[data-view-count]").forEach(function (badge) {
      var count = kpis.getAttribute("data-count-" + badge.getAttribute("data-view-count"));
      if (count !== null) { badge.textContent = count; }
    });
  }

  // Inbox: re-render the list when it changed (new calls, finished transcripts, tags).
  function pollInbox(list) {
    var url = list.getAttribute("data-live-url");
    var last = list.innerHTML.trim();
    function tick() {
      if (document.hidden) { return; }
      var focused = document.activeElement && list.contains(document.activeElement);
      if (focused) { return; }
      fetchFragment(url).then(function (html) {
        var fresh = html.trim();
        if (fresh === last) { return; }
        // The user moved into the list (j/k, a click) while this was fetched: never pull
        // the rows from under their focus; the next tick tries again.
        if (document.activeElement && list.contains(document.activeElement)) { return; }
        var before = sids(list);
        var checked = checkedSids(list);
        list.innerHTML = fresh;
        last = fresh;
        restoreChecked(list, checked);
        refreshViewCounts(list);
        var added = sids(list).filter(function (sid) { return before.indexOf(sid) === -1; });
        added.forEach(function (sid) {
          var row = list.querySelector('[data-call-sid="' + sid + '"]');
          if (row) { row.classList.add("is-fresh"); }
        });
        var label = document.documentElement.lang === "he" ? "הרשימה עודכנה" : "The list was updated";
        announce(added.length ? label + " (+" + added.length + ")" : label);
      }).catch(function () { /* try again on the next tick */ });
    }
    window.setInterval(tick, INBOX_INTERVAL_MS);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { tick(); } });
  }

  // Call page: refresh the transcript panel until transcription has finished.
  function pollTranscript(panel) {
    var timer = window.setInterval(function () {
      var current = document.getElementById("transcript");
      if (!current || current.getAttribute("data-pending") !== "1") {
        window.clearInterval(timer);
        return;
      }
      if (document.hidden) { return; }
      fetchFragment(current.getAttribute("data-live-url")).then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html.trim();
        var next = holder.firstElementChild;
        if (next && next.outerHTML !== current.outerHTML) {
          current.replaceWith(next);
          if (next.getAttribute("data-pending") !== "1") {
            announce(document.documentElement.lang === "he" ? "התמלול מוכן" : "The transcript is ready");
          }
        }
      }).catch(function () { /* try again */ });
    }, CALL_INTERVAL_MS);
    return panel;
  }

  // Whole rows of the inbox open the call (the caller link stays the keyboard target).
  function clickableRows() {
    document.addEventListener("click", function (event) {
      var row = event.target.closest && event.target.closest(".call-row");
      if (!row || event.target.closest("a, button, input, select, textarea, .cell-select")) { return; }
      var link = row.querySelector("a.row-link");
      if (link) { window.location.href = link.href; }
    });
  }

  // Playback speed of the recording (voicemails are often slow to get to the point).
  function playbackSpeed() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest(".speed-btn");
      if (!button) { return; }
      var group = button.closest(".speed");
      var player = document.getElementById(group.getAttribute("data-player"));
      if (!player) { return; }
      player.playbackRate = parseFloat(button.getAttribute("data-rate"));
      group.querySelectorAll(".speed-btn").forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
    });
  }

  // Transcript segments: a click (or Enter) seeks the player there and plays; while it
  // plays, the sentence being heard is highlighted. Delegated, so a refreshed panel works.
  function segmentPlayer() {
    function player() { return document.getElementById("player"); }
    function seek(segment) {
      var audio = player();
      if (!audio) { return; }
      audio.currentTime = parseFloat(segment.getAttribute("data-start")) || 0;
      var playing = audio.play();
      if (playing && playing.catch) { playing.catch(function () { /* autoplay refused */ }); }
      follow();
    }
    function follow() {
      var audio = player();
      var holder = document.getElementById("segments");
      if (!audio || !holder) { return; }
      var now = audio.currentTime;
      holder.querySelectorAll(".segment").forEach(function (segment) {
        var start = parseFloat(segment.getAttribute("data-start"));
        var end = parseFloat(segment.getAttribute("data-end"));
        var current = now >= start && now < end;
        segment.classList.toggle("is-current", current);
        if (current) { segment.setAttribute("aria-current", "true"); }
        else { segment.removeAttribute("aria-current"); }
      });
    }
    document.addEventListener("click", function (event) {
      var segment = event.target.closest && event.target.closest(".segment");
      if (segment) { seek(segment); }
    });
    document.addEventListener("keydown", function (event) {
      var segment = event.target.closest && event.target.closest(".segment");
      if (segment && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        seek(segment);
      }
    });
    var audio = player();
    if (audio) {
      audio.addEventListener("timeupdate", follow);
      audio.addEventListener("seeked", follow);
    }
  }

  // Buttons that need a second thought.
  function confirmations() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest && event.target.closest("[data-confirm]");
      if (button && !window.confirm(button.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  }

  // A refused form (crm_ui.feedback): its error in view, the cursor in the field it names,
  // so a keyboard or screen-reader user lands where the fix goes.
  function refusedForm() {
    var error = document.querySelector(".form-error");
    if (!error) { return; }
    var field = (error.closest("form") || error.parentNode).querySelector("[aria-invalid='true']");
    error.scrollIntoView({ block: "center" });
    if (field) { field.focus({ preventScroll: true }); }
  }

  // Keyboard shortcuts, listed in the #shortcuts-help dialog. Never while typing in a field,
  // never with Ctrl/Alt/Meta (the browser's own); Shift only makes "?".
  var TEXT_INPUTS = /^(text|search|email|password|number|tel|url|date|datetime-local|month|time|week)$/;

  function typing(element) {
    if (!element || element === document.body) { return false; }
    if (element.isContentEditable) { return true; }
    var tag = element.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") { return true; }
    // A checkbox (the inbox's row selection) or a button takes no letters.
    return tag === "INPUT" && TEXT_INPUTS.test((element.type || "text").toLowerCase());
  }

  function shortcutKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) { return ""; }
    if (event.key === "?" || (event.code === "Slash" && event.shiftKey)) { return "?"; }
    if (event.shiftKey) { return ""; }
    var key = event.key || "";
    // On a Hebrew layout j types "ח": the physical key is what counts.
    if (key.length === 1 && !/[a-z]/i.test(key) && /^Key[A-Z]$/.test(event.code || "")) {
      key = event.code.charAt(3);
    }
    return key.length === 1 ? key.toLowerCase() : key;
  }

  function shortcutsHelp() {
    var dialog = document.getElementById("shortcuts-help");
    var opener = null;
    if (!dialog) { return { open: function () {}, isOpen: function () { return false; } }; }
    function isOpen() { return dialog.open || dialog.hasAttribute("open"); }
    function open() {
      if (isOpen()) { return; }
      opener = document.activeElement;
      if (typeof dialog.showModal === "function") { dialog.showModal(); }
      else { dialog.setAttribute("open", ""); }
      document.getElementById("shortcuts-close").focus();
    }
    // Closing and giving the focus back happen in one step: the dialog's own "close" event
    // comes a task later, when the dialog is already hidden with the focus still inside.
    function close() {
      if (typeof dialog.close === "function") { dialog.close(); }
      else { dialog.removeAttribute("open"); }
      returnFocus();
    }
    function returnFocus() {
      var back = opener && document.contains(opener) ? opener : null;
      opener = null;
      if (back && back !== document.body && back.focus) { back.focus(); }
      else if (dialog.contains(document.activeElement)) { document.activeElement.blur(); }
    }
    dialog.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { event.preventDefault(); close(); }  // instead of the native cancel
    });
    dialog.addEventListener("close", function () {  // closed any other way
      if (dialog.contains(document.activeElement) || opener) { returnFocus(); }
    });
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog) { close(); }  // a click on the backdrop
    });
    document.getElementById("shortcuts-close").addEventListener("click", close);
    var button = document.getElementById("shortcuts-open");
    if (button) { button.addEventListener("click", open); }
    return { open: open, isOpen: isOpen };
  }

  // The inbox: j/k move a highlight (and the focus) between rows; Enter or o opens it.
  function inboxRows() {
    return Array.prototype.slice.call(document.querySelectorAll("#call-list .call-row[data-call-sid]"));
  }

  function highlightedRow() {
    var active = document.activeElement;
    var row = active && active.closest ? active.closest("#call-list .call-row") : null;
    return row || document.querySelector("#call-list .call-row.is-highlighted");
  }

  function highlightRow(step) {
    var rows = inboxRows();
    if (!rows.length) { return; }
    var index = rows.indexOf(highlightedRow());
    var next = index === -1 ? 0 : Math.max(0, Math.min(rows.length - 1, index + step));
    rows.forEach(function (row, i) { row.classList.toggle("is-highlighted", i === next); });
    var link = rows[next].querySelector("a.row-link");
    if (link) { link.focus(); }
    rows[next].scrollIntoView({ block: "nearest" });
  }

  function openHighlighted() {
    var row = highlightedRow();
    var link = row && row.querySelector("a.row-link");
    if (link) { window.location.href = link.href; }
  }

  function follow(id) {
    var link = document.getElementById(id);
    if (link) { window.location.href = link.href; }
  }

  function keyboardShortcuts() {
    var help = shortcutsHelp();
    var inbox = document.getElementById("call-list");
    var callPage = document.querySelector(".call-pager");
    document.addEventListener("keydown", function (event) {
      if (event.defaultPrevented || help.isOpen() || typing(event.target)) { return; }
      var key = shortcutKey(event);
      var handled = true;
      if (key === "?") {
        help.open();
      } else if (inbox && (key === "j" || key === "k")) {
        highlightRow(key === "j" ? 1 : -1);
      } else if (inbox && key === "o") {
        openHighlighted();
      } else if (inbox && key === "Enter" && !event.target.closest("a, button, input, select, textarea, summary")) {
        openHighlighted();  // on a link the browser follows it itself
      } else if (callPage && key === "j") {
        follow("call-next");
      } else if (callPage && key === "k") {
        follow("call-prev");
      } else if (callPage && key === "e") {
        var resolve = document.getElementById("resolve-next-form");
        if (resolve) { resolve.requestSubmit ? resolve.requestSubmit() : resolve.submit(); }
        else { follow("call-next"); }  // resolved already: just go on
      } else if (callPage && key === "c") {
        var callBack = document.getElementById("call-back");
        if (callBack && !callBack.disabled) { callBack.click(); }
        else {
          var card = document.getElementById("callback");
          if (card) { card.scrollIntoView(); }
        }
      } else {
        handled = false;
      }
      if (handled) { event.preventDefault(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var more = document.getElementById("more-filters");
    if (more && window.matchMedia("(min-width: 721px)").matches) { more.open = true; }
    var list = document.getElementById("call-list");
    if (list) { pollInbox(list); }
    var panel = document.getElementById("transcript");
    if (panel && panel.getAttribute("data-pending") === "1") { pollTranscript(panel); }
    clickableRows();
    bulkSelection();
    confirmations();
    playbackSpeed();
    segmentPlayer();
    refusedForm();
    keyboardShortcuts();
  });
})();
