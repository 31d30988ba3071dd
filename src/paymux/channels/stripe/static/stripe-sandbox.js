/* paymux Stripe sandbox: a small stand-in for https://js.stripe.com/v3 talking to the sandbox
   that serves this file (its own origin). Subset: Stripe(pk).elements().create('card'|
   'paymentRequestButton').mount(el), stripe.confirmCardPayment(clientSecret, {payment_method:
   {card: element}, return_url}), stripe.retrievePaymentIntent(clientSecret). A 3-D Secure
   challenge (requires_action + redirect_to_url) sends the browser to the sandbox's challenge
   page, which returns to return_url. No inline script, no eval: works under a strict CSP. */
(function () {
  "use strict";
  var script = document.currentScript;
  var API = script ? new URL(script.src).origin : "";

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

  function CardElement() { this.inputs = null; }
  CardElement.prototype.mount = function (target) {
    var box = typeof target === "string" ? document.querySelector(target) : target;
    var fields = [
      ["number", "Card number", "cc-number", "4242 4242 4242 4242"],
      ["exp", "MM / YY", "cc-exp", "12 / 34"],
      ["cvc", "CVC", "cc-csc", "123"]
    ];
    var inputs = {};
    fields.forEach(function (f) {
      var label = el("label", {"class": "sbx-card-" + f[0]}, f[1]);
      var input = el("input", {name: "sbx-" + f[0], autocomplete: f[2], inputmode: "numeric",
                               placeholder: f[3], "data-sandbox-card": f[0]});
      label.appendChild(input);
      box.appendChild(label);
      inputs[f[0]] = input;
    });
    this.inputs = inputs;
    return this;
  };
  CardElement.prototype.value = function () {
    var exp = (this.inputs.exp.value || "").split("/");
    return {number: this.inputs.number.value.replace(/\s+/g, ""),
            exp_month: (exp[0] || "").trim(), exp_year: (exp[1] || "").trim(),
            cvc: this.inputs.cvc.value.trim()};
  };

  /* A stand-in for the Apple Pay / Google Pay sheet: a button that opens a sheet with Pay and
     Cancel; Pay confirms with Stripe's test payment method pm_card_visa. */
  function WalletElement(stripe, options) { this.stripe = stripe; this.options = options || {}; }
  WalletElement.prototype.mount = function (target) {
    var self = this;
    var box = typeof target === "string" ? document.querySelector(target) : target;
    var wallet = self.options.wallet === "google_pay" ? "Google Pay" : "Apple Pay";
    var button = el("button", {type: "button", "data-sandbox-wallet": "open"},
                    wallet + " (sandbox)");
    box.appendChild(button);
    button.addEventListener("click", function () {
      var sheet = el("div", {role: "dialog", "aria-label": wallet + " sandbox sheet",
                             "data-sandbox-wallet": "sheet"});
      sheet.appendChild(el("p", {}, wallet + " · sandbox · Visa •••• 4242"));
      var pay = el("button", {type: "button", "data-sandbox-wallet": "pay"}, "Pay");
      var cancel = el("button", {type: "button", "data-sandbox-wallet": "cancel"}, "Cancel");
      sheet.appendChild(pay);
      sheet.appendChild(cancel);
      box.appendChild(sheet);
      cancel.addEventListener("click", function () {
        box.removeChild(sheet);
        if (self.onresult) self.onresult({error: {type: "wallet", code: "canceled"}});
      });
      pay.addEventListener("click", function () {
        box.removeChild(sheet);
        self.stripe.confirmCardPayment(self.options.clientSecret,
          {payment_method: "pm_card_visa", return_url: self.options.return_url})
          .then(function (r) { if (self.onresult) self.onresult(r); });
      });
    });
    return this;
  };
  WalletElement.prototype.on = function (event, fn) {
    if (event === "result") this.onresult = fn;
    return this;
  };

  function intentId(clientSecret) { return String(clientSecret).split("_secret_")[0]; }

  function Stripe(publishableKey) {
    if (!(this instanceof Stripe)) return new Stripe(publishableKey);
    this.pk = publishableKey;
  }
  Stripe.prototype.elements = function () {
    var stripe = this;
    return {create: function (type, options) {
      if (type === "card") return new CardElement();
      if (type === "paymentRequestButton") return new WalletElement(stripe, options);
      throw new Error("paymux Stripe sandbox: unsupported element " + type);
    }};
  };
  Stripe.prototype.retrievePaymentIntent = function (clientSecret) {
    return call(this.pk, "GET", "/v1/payment_intents/" + intentId(clientSecret),
                {client_secret: clientSecret}).then(function (b) {
      return b.error ? {error: b.error} : {paymentIntent: b};
    });
  };
  Stripe.prototype.confirmCardPayment = function (clientSecret, data) {
    var pk = this.pk;
    data = data || {};
    var pm = data.payment_method;
    var created = typeof pm === "string" ? Promise.resolve({id: pm}) :
      call(pk, "POST", "/v1/payment_methods", {type: "card", card: pm.card.value()});
    return created.then(function (method) {
      if (method.error) return {error: method.error};
      return call(pk, "POST", "/v1/payment_intents/" + intentId(clientSecret) + "/confirm",
                  {client_secret: clientSecret, payment_method: method.id,
                   return_url: data.return_url}).then(function (b) {
        var intent = b.error ? b.error.payment_intent : b;
        if (intent && intent.status === "requires_action" && intent.next_action &&
            intent.next_action.type === "redirect_to_url") {
          window.location.assign(intent.next_action.redirect_to_url.url);
          return {paymentIntent: intent, redirecting: true};
        }
        return b.error ? {error: b.error} : {paymentIntent: b};
      });
    });
  };
  window.Stripe = Stripe;
})();
