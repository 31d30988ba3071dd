// The WeChat Pay sandbox's stand-in for the WeixinJSBridge that WeChat's webview injects.
// invoke('getBrandWCPayRequest', params, cb) opens the sandbox's payment sheet for params; the
// sheet comes back to this page with the result in the fragment, and the next invoke for the
// same package calls cb({err_msg: ...}) with it, as if the sheet had just closed.
(function () {
  "use strict";
  var script = document.currentScript;
  var base = script ? script.src.replace(/\/_sandbox\/weixin-jsbridge\.js.*$/, "") : "";
  var returned = null;
  var hash = location.hash.replace(/^#/, "");
  if (hash.indexOf("sandbox_result=") !== -1) {
    var q = new URLSearchParams(hash);
    returned = { err_msg: q.get("sandbox_result"), package: q.get("package") };
    history.replaceState(null, "", location.pathname + location.search);
  }
  window.WeixinJSBridge = {
    invoke: function (name, params, cb) {
      cb = cb || function () {};
      if (name !== "getBrandWCPayRequest") {
        setTimeout(function () { cb({ err_msg: name + ":fail_not_supported" }); }, 0);
        return;
      }
      if (returned && returned.package === params["package"]) {
        var result = { err_msg: returned.err_msg };
        returned = null;
        setTimeout(function () { cb(result); }, 0);
        return;
      }
      var query = new URLSearchParams();
      ["appId", "timeStamp", "nonceStr", "package", "signType", "paySign"].forEach(function (k) {
        if (params[k] !== undefined) { query.set(k, params[k]); }
      });
      query.set("return_url", location.href.split("#")[0]);
      location.assign(base + "/_sandbox/wallet/jsapi?" + query.toString());
    },
    on: function () {},
    call: function () {}
  };
  document.dispatchEvent(new Event("WeixinJSBridgeReady"));
})();
