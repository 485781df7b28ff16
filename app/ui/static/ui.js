/* The reconciliation UI's own script: keyboard shortcuts, the upload preview's size cap, the
   link page's running totals. Served as a file (the CSP allows no inline script); every page
   works without it. No dependencies; htmx events are used when htmx is there. */
(function () {
  "use strict";

  var PREVIEW_BYTES = 256 * 1024;  // app/ui/preview.py PREVIEW_BYTES

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function rows() {
    var table = document.querySelector("table[data-rows]");
    return table ? Array.prototype.slice.call(table.querySelectorAll("tr[data-row]")) : [];
  }

  function currentRow() {
    var active = document.activeElement;
    var row = active && active.closest ? active.closest("tr[data-row]") : null;
    return row || document.querySelector("tr[data-row].current");
  }

  function focusRow(row) {
    if (!row) return;
    rows().forEach(function (r) { r.classList.remove("current"); });
    row.classList.add("current");
    row.focus();
    row.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    var all = rows();
    if (!all.length) return;
    var at = all.indexOf(currentRow());
    var next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, at + step));
    focusRow(all[next]);
  }

  var afterSwapFocus = null;  // id of the row to focus once htmx has swapped the updated one in

  function act(action) {
    var row = currentRow();
    if (!row) return;
    var button = row.querySelector('[data-action="' + action + '"]');
    if (!button || button.disabled) return;
    var all = rows();
    var next = all[all.indexOf(row) + 1];
    afterSwapFocus = next ? next.id : row.id;
    button.click();
  }

  function toggleSelect() {
    var row = currentRow();
    var box = row && row.querySelector('input[type="checkbox"]:not([disabled])');
    if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change", { bubbles: true })); }
  }

  function open() {
    var row = currentRow();
    var link = row && row.querySelector("a[data-open]");
    if (link) link.click();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var dialog = document.getElementById("shortcuts");
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "c": act("confirm"); break;
      case "r": act("reject"); break;
      case "x": toggleSelect(); break;
      case "o": open(); break;
      case "Enter":
        if (event.target && event.target.matches && event.target.matches("tr[data-row]")) { open(); break; }
        return;
      case "/":
        var search = document.querySelector("[data-search]");
        if (!search) return;
        search.focus();
        break;
      case "?":
        if (dialog && dialog.showModal && !dialog.open) dialog.showModal();
        break;
      default:
        return;
    }
    event.preventDefault();
  });

  document.addEventListener("htmx:afterSettle", function () {
    if (!afterSwapFocus) return;
    var row = document.getElementById(afterSwapFocus);
    afterSwapFocus = null;
    focusRow(row);
  });

  // Upload preview: send only the head of a large text file (the server reads no more of it).
  document.addEventListener("htmx:configRequest", function (event) {
    var detail = event.detail;
    if (!detail || !detail.path || !/\/preview$/.test(detail.path) || !detail.formData) return;
    var file = detail.formData.get("file");
    if (!(file instanceof File) || file.size <= PREVIEW_BYTES || /\.xls[xm]$/i.test(file.name)) return;
    detail.formData.set("file", file.slice(0, PREVIEW_BYTES), file.name);
    detail.formData.set("truncated", "1");
  });

  // Link page: what is selected on each side, and the difference, as you tick.
  function formatMinor(minor, currency, exponent) {
    var negative = minor < 0;
    var digits = String(Math.abs(minor));
    if (exponent > 0) {
      while (digits.length <= exponent) digits = "0" + digits;
      digits = digits.slice(0, -exponent) + "." + digits.slice(-exponent);
    }
    return (negative ? "-" : "") + digits + " " + currency;
  }

  function linkTotals(form) {
    var out = document.getElementById("link-totals");
    if (!out) return;
    var sums = { left: 0, right: 0 }, counts = { left: 0, right: 0 }, currencies = {};
    form.querySelectorAll("input[data-side]:checked").forEach(function (box) {
      sums[box.dataset.side] += parseInt(box.dataset.amountMinor, 10);
      counts[box.dataset.side] += 1;
      currencies[box.dataset.currency] = true;
    });
    var codes = Object.keys(currencies);
    if (!codes.length) { out.textContent = "Nothing selected."; return; }
    if (codes.length > 1) { out.textContent = "Selected records are in " + codes.join(" and ") + ": a link needs one currency."; return; }
    var exp = { JPY: 0, KRW: 0, BHD: 3, KWD: 3, OMR: 3, TND: 3, JOD: 3 }[codes[0]];
    if (exp === undefined) exp = 2;
    out.textContent = "Selected: " + counts.left + " left (" + formatMinor(sums.left, codes[0], exp) + "), " +
      counts.right + " right (" + formatMinor(sums.right, codes[0], exp) + "); difference " +
      formatMinor(sums.right - sums.left, codes[0], exp) + ".";
  }

  document.addEventListener("change", function (event) {
    var form = event.target && event.target.closest ? event.target.closest("form[data-link]") : null;
    if (form) linkTotals(form);
  });
})();
