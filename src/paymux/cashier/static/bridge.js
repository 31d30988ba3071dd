// Launches a JSAPI payment through the wallet app's JS bridge (no inline script: the CSP allows
// only files from 'self' and the sandbox's stand-in). WeChat: WeixinJSBridge.invoke(
// 'getBrandWCPayRequest', params, cb) → err_msg get_brand_wcpay_request:ok|cancel|fail.
// Alipay: AlipayJSBridge.call('tradePay', {tradeNO}, cb) → resultCode 9000 ok, 8000/6004
// processing, 6001 cancel, anything else failed. ok/processing: the page's polling shows the
// result; cancel: back to the method list; failed: ask the gateway (it queries the channel).
(function () {
  "use strict";
  var box = document.querySelector("[data-wallet-bridge]");
  if (!box) { return; }
  var kind = box.dataset.walletBridge;
  var params = JSON.parse(box.dataset.params || "{}");
  var message = box.querySelector("[data-wallet-message]");
  var button = box.querySelector("[data-launch]");
  var name = kind === "wechat" ? "WeixinJSBridge" : "AlipayJSBridge";
  var busy = false;

  function outcome(result) {
    busy = false;
    if (result === "ok") {
      button.hidden = true;
      message.textContent = message.dataset.confirming;
    } else if (result === "cancel") {
      location.assign(box.dataset.listUrl);
    } else {
      location.assign(box.dataset.failUrl);
    }
  }

  function launch() {
    if (busy) { return; }
    var bridge = window[name];
    if (!bridge) { message.textContent = message.dataset.noBridge; return; }
    busy = true;
    if (kind === "wechat") {
      bridge.invoke("getBrandWCPayRequest", params, function (res) {
        var msg = String((res && res.err_msg) || "");
        outcome(/:ok$/.test(msg) ? "ok" : /:cancel$/.test(msg) ? "cancel" : "fail");
      });
    } else {
      bridge.call("tradePay", { tradeNO: params.tradeNO }, function (res) {
        var code = String((res && res.resultCode) || "");
        outcome(code === "9000" || code === "8000" || code === "6004" ? "ok"
          : code === "6001" ? "cancel" : "fail");
      });
    }
  }

  button.addEventListener("click", launch);
  if (window[name]) {
    launch();
  } else {
    document.addEventListener(name + "Ready", launch, { once: true });
    setTimeout(function () { if (!window[name]) { message.textContent = message.dataset.noBridge; } }, 3000);
  }
})();
