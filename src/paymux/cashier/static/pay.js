// The cashier page's behaviour (no inline script: the CSP allows only files from 'self').
(function () {
  "use strict";
  var el = document.querySelector("[data-countdown]");
  if (el) {
    var end = Date.parse(el.dataset.expiresAt);
    var tick = function () {
      var left = Math.max(0, Math.floor((end - Date.now()) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = m + ":" + (s < 10 ? "0" : "") + s;
      if (left === 0) { setTimeout(function () { location.reload(); }, 1000); return; }
      setTimeout(tick, 1000);
    };
    tick();
  }
  var back = document.querySelector("[data-return-url]");
  if (back) { setTimeout(function () { location.href = back.dataset.returnUrl; }, 1500); }
  var form = document.querySelector("#pay-form form");
  if (form) { form.submit(); }
})();
