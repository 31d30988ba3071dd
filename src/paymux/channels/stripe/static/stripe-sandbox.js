/* paymux Stripe sandbox: a small stand-in for https://js.stripe.com/v3 talking to the sandbox
   that serves this file (the URL it was loaded from, without /_sandbox/js/v3). The subset of
   Stripe.js's API the hosted cashier uses, with Stripe's names and shapes:

     var stripe = Stripe(publishableKey);
     var elements = stripe.elements({locale: "zh" | "en"});
     var card = elements.create("card"); card.mount(el); card.on("change", fn);
     stripe.confirmCardPayment(clientSecret, {payment_method: {card: card} | "pm_…",
                                              return_url: url}, {handleActions: bool});
     stripe.retrievePaymentIntent(clientSecret);
     var pr = stripe.paymentRequest({country, currency, total: {label, amount},
                                     disableWallets: [...]});
     pr.canMakePayment()  -> {applePay, googlePay, link} or null
     elements.create("paymentRequestButton", {paymentRequest: pr}).mount(el);
     pr.on("paymentmethod", function (ev) { ... ev.complete("success" | "fail"); });
     pr.on("cancel", fn); pr.show();

   A 3-D Secure challenge (requires_action + redirect_to_url) sends the browser to the
   sandbox's challenge page, which returns to return_url (Stripe.js would open it in a modal).
   The wallet sheet stands in for Apple Pay / Google Pay: whether the device offers a wallet is
   decided from the user agent, as a real browser decides by capability (Apple Pay: Safari on
   an Apple device; Google Pay: Chrome on Android). Its "Pay" hands Stripe's test payment
   method pm_card_visa to the page. No inline script or style, no eval: works under a strict
   CSP. */
(function () {
  "use strict";
  var script = document.currentScript;
  var API = script ? script.src.replace(/\/_sandbox\/js\/v3.*$/, "") : "";

  var TEXT = {
    en: {number: "Card number", exp: "Expiry date (MM / YY)", cvc: "Security code (CVC)",
         pay: "Pay", cancel: "Cancel", sheet: "sandbox payment sheet"},
    zh: {number: "卡号", exp: "有效期（月 / 年）", cvc: "安全码（CVC）",
         pay: "支付", cancel: "取消", sheet: "沙箱支付面板"}
  };

  function form(data, prefix, out) {
    out = out || [];
    Object.keys(data).forEach(function (k) {
      var v = data[k], name = prefix ? prefix + "[" + k + "]" : k;
      if (v === undefined || v === null) return;
      if (typeof v === "object") form(v, name, out);
      else out.push(encodeURIComponent(name) + "=" + encodeURIComponent(String(v)));
    });
    return out.join("&");
  }

  function call(pk, method, path, data) {
    var opts = {method: method, headers: {"Authorization": "Bearer " + pk}};
    var url = API + path;
    if (method === "POST") {
      opts.headers["Content-Type"] = "application/x-www-form-urlencoded";
      opts.body = form(data);
    } else {
      url += "?" + form(data);
    }
    return fetch(url, opts).then(function (r) { return r.json(); });
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) e.textContent = text;
    return e;
  }

  function target(t) { return typeof t === "string" ? document.querySelector(t) : t; }

  var uid = 0;

  function CardElement(text) { this.text = text; this.inputs = null; this.handlers = {}; }
  CardElement.prototype.mount = function (where) {
    var self = this, box = target(where), t = this.text;
    var fields = [
      ["number", t.number, "cc-number", "4242 4242 4242 4242"],
      ["exp", t.exp, "cc-exp", "12 / 34"],
      ["cvc", t.cvc, "cc-csc", "123"]
    ];
    var inputs = {};
    fields.forEach(function (f) {
      var id = "sbx-card-" + f[0] + "-" + (++uid);
      var wrap = el("div", {"class": "sbx-field sbx-card-" + f[0]});
      wrap.appendChild(el("label", {"for": id}, f[1]));
      var input = el("input", {id: id, name: "sbx-" + f[0], autocomplete: f[2],
                               inputmode: "numeric", placeholder: f[3],
                               "data-sandbox-card": f[0]});
      input.addEventListener("input", function () { self.emit("change", self.state()); });
      wrap.appendChild(input);
      box.appendChild(wrap);
      inputs[f[0]] = input;
    });
    this.inputs = inputs;
    setTimeout(function () { self.emit("ready", {}); }, 0);
    return this;
  };
  CardElement.prototype.on = function (event, fn) { this.handlers[event] = fn; return this; };
  CardElement.prototype.emit = function (event, data) {
    if (this.handlers[event]) this.handlers[event](data);
  };
  CardElement.prototype.state = function () {
    var v = this.value();
    return {elementType: "card", empty: !v.number && !v.exp_month && !v.cvc,
            complete: v.number.length >= 13 && !!v.exp_year && v.cvc.length >= 3};
  };
  CardElement.prototype.focus = function () { if (this.inputs) this.inputs.number.focus(); };
  CardElement.prototype.value = function () {
    var exp = (this.inputs.exp.value || "").split("/");
    return {number: this.inputs.number.value.replace(/\s+/g, ""),
            exp_month: (exp[0] || "").trim(), exp_year: (exp[1] || "").trim(),
            cvc: this.inputs.cvc.value.trim()};
  };

  function wallets() {
    var ua = navigator.userAgent;
    var apple = /iPhone|iPad|iPod|Macintosh/.test(ua) && /Safari\//.test(ua) &&
      !/Chrome|CriOS|FxiOS|EdgiOS|OPiOS|Android/.test(ua);
    var google = /Android/.test(ua) && /Chrome\//.test(ua) && !/; wv\)|EdgA|OPR|SamsungBrowser/.test(ua);
    return {applePay: apple, googlePay: google, link: false};
  }

  function PaymentRequest(stripe, options) {
    this.stripe = stripe;
    this.options = options || {};
    this.handlers = {};
    this.sheet = null;
    this.box = null;
  }
  PaymentRequest.prototype.canMakePayment = function () {
    var found = wallets(), off = this.options.disableWallets || [];
    off.forEach(function (w) { if (w in found) found[w] = false; });
    var any = found.applePay || found.googlePay || found.link;
    return Promise.resolve(any ? found : null);
  };
  PaymentRequest.prototype.on = function (event, fn) { this.handlers[event] = fn; return this; };
  PaymentRequest.prototype.emit = function (event, data) {
    if (this.handlers[event]) this.handlers[event](data);
  };
  PaymentRequest.prototype.walletName = function () {
    var found = wallets(), off = this.options.disableWallets || [];
    if (found.applePay && off.indexOf("applePay") < 0) return "applePay";
    if (found.googlePay && off.indexOf("googlePay") < 0) return "googlePay";
    return null;
  };
  PaymentRequest.prototype.show = function () {
    var self = this, name = this.walletName();
    if (!name || this.sheet) return;
    var t = this.stripe.text, o = this.options, total = o.total || {};
    var label = name === "applePay" ? "Apple Pay" : "Google Pay";
    var sheet = el("div", {role: "dialog", "aria-label": label + " " + t.sheet,
                           "class": "sbx-sheet", "data-sandbox-wallet": "sheet"});
    sheet.appendChild(el("p", {}, label + " · sandbox · " + (total.label || "") + " · " +
                         String(o.currency || "").toUpperCase() + " " + total.amount +
                         " · Visa •••• 4242"));
    var pay = el("button", {type: "button", "data-sandbox-wallet": "pay"}, t.pay);
    var cancel = el("button", {type: "button", "data-sandbox-wallet": "cancel"}, t.cancel);
    sheet.appendChild(pay);
    sheet.appendChild(cancel);
    (this.box || document.body).appendChild(sheet);
    this.sheet = sheet;
    var close = function () { if (sheet.parentNode) sheet.parentNode.removeChild(sheet); self.sheet = null; };
    cancel.addEventListener("click", function () { close(); self.emit("cancel", {}); });
    pay.addEventListener("click", function () {
      pay.disabled = true;
      self.emit("paymentmethod", {
        walletName: name,
        paymentMethod: {id: "pm_card_visa", object: "payment_method", type: "card",
                        card: {brand: "visa", last4: "4242", wallet: {type: name === "applePay" ? "apple_pay" : "google_pay"}}},
        complete: function () { close(); }
      });
    });
    pay.focus();
  };

  function ButtonElement(options) { this.pr = (options || {}).paymentRequest; }
  ButtonElement.prototype.mount = function (where) {
    var pr = this.pr, box = target(where), name = pr.walletName();
    var label = name === "applePay" ? "Apple Pay" : name === "googlePay" ? "Google Pay" : "";
    var button = el("button", {type: "button", "class": "sbx-wallet-button",
                               "data-sandbox-wallet": "open", "aria-label": pr.stripe.text.pay + " · " + label},
                    label + " (sandbox)");
    box.appendChild(button);
    pr.box = box;
    button.addEventListener("click", function () { pr.show(); });
    return this;
  };
  ButtonElement.prototype.on = function () { return this; };

  function intentId(clientSecret) { return String(clientSecret).split("_secret_")[0]; }

  function Stripe(publishableKey) {
    if (!(this instanceof Stripe)) return new Stripe(publishableKey);
    this.pk = publishableKey;
    this.text = TEXT.en;
  }
  Stripe.prototype.elements = function (options) {
    var stripe = this, locale = String((options || {}).locale || "en").slice(0, 2);
    stripe.text = TEXT[locale] || TEXT.en;
    return {create: function (type, opts) {
      if (type === "card") return new CardElement(stripe.text);
      if (type === "paymentRequestButton") return new ButtonElement(opts);
      throw new Error("paymux Stripe sandbox: unsupported element " + type);
    }};
  };
  Stripe.prototype.paymentRequest = function (options) { return new PaymentRequest(this, options); };
  Stripe.prototype.retrievePaymentIntent = function (clientSecret) {
    return call(this.pk, "GET", "/v1/payment_intents/" + intentId(clientSecret),
                {client_secret: clientSecret}).then(function (b) {
      return b.error ? {error: b.error} : {paymentIntent: b};
    });
  };

  function handle(intent, handleActions) {
    if (handleActions && intent && intent.status === "requires_action" && intent.next_action &&
        intent.next_action.type === "redirect_to_url") {
      window.location.assign(intent.next_action.redirect_to_url.url);
      return new Promise(function () {});  // the page is leaving
    }
    return null;
  }

  Stripe.prototype.confirmCardPayment = function (clientSecret, data, options) {
    var pk = this.pk;
    var handleActions = !options || options.handleActions !== false;
    data = data || {};
    var pm = data.payment_method;
    if (!pm) {  // the intent's own next action (after {handleActions: false})
      return this.retrievePaymentIntent(clientSecret).then(function (r) {
        return (r.paymentIntent && handle(r.paymentIntent, true)) || r;
      });
    }
    var created = typeof pm === "string" ? Promise.resolve({id: pm}) :
      call(pk, "POST", "/v1/payment_methods", {type: "card", card: pm.card.value()});
    return created.then(function (method) {
      if (method.error) return {error: method.error};
      return call(pk, "POST", "/v1/payment_intents/" + intentId(clientSecret) + "/confirm",
                  {client_secret: clientSecret, payment_method: method.id,
                   return_url: data.return_url}).then(function (b) {
        if (b.error) return {error: b.error};
        return handle(b, handleActions) || {paymentIntent: b};
      });
    });
  };
  window.Stripe = Stripe;
})();
