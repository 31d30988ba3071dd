// The Alipay sandbox's stand-in for the AlipayJSBridge that the Alipay app's webview injects.
// call('tradePay', {tradeNO}, cb) opens the sandbox's payment sheet for the trade; the sheet
// comes back to this page with the result in the fragment, and the next tradePay for the same
// trade calls cb({resultCode: ...}) with it, as if the sheet had just closed.
(function () {
  "use strict";
  var script = document.currentScript;
  var base = script ? script.src.replace(/\/_sandbox\/alipay-jsbridge\.js.*$/, "") : "";
  var returned = null;
  var hash = location.hash.replace(/^#/, "");
  if (hash.indexOf("sandbox_result=") !== -1) {
    var q = new URLSearchParams(hash);
    returned = { resultCode: q.get("sandbox_result"), tradeNO: q.get("tradeNO") };
    history.replaceState(null, "", location.pathname + location.search);
  }
  window.AlipayJSBridge = {
    call: function (name, params, cb) {
      cb = cb || function () {};
      if (name !== "tradePay") {
        setTimeout(function () { cb({ error: 1, errorMessage: "not supported" }); }, 0);
        return;
      }
      params = params || {};
      if (returned && returned.tradeNO === params.tradeNO) {
        var result = { resultCode: returned.resultCode };
        returned = null;
        setTimeout(function () { cb(result); }, 0);
        return;
      }
      var query = new URLSearchParams();
      query.set("tradeNO", params.tradeNO || "");
      query.set("return_url", location.href.split("#")[0]);
      location.assign(base + "/_sandbox/wallet/trade_pay?" + query.toString());
    }
  };
  document.dispatchEvent(new Event("AlipayJSBridgeReady"));
})();
