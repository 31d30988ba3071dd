// The card / Apple Pay / Google Pay step of the cashier page, on Stripe.js's API (or the
// sandbox's stand-in loaded from the step's js_url): mount the card form or the wallet button,
// confirm the PaymentIntent with its client secret, then hand over to /pay/<id>/return, which
// asks the channel and shows the outcome. A 3-D Secure challenge leaves the page and comes back
// through the same address. A decline shows the cashier's own message in the page's language
// and the other methods; the form stays usable for another card. No inline script (CSP).
(function () {
  "use strict";
  var root = document.querySelector("[data-sdk]");
  if (!root || typeof window.Stripe !== "function") return;
  var d = root.dataset;
  var stripe = window.Stripe(d.publishableKey);
  var elements = stripe.elements({locale: d.locale});
  var busy = root.querySelector("[data-card-busy]");
  var box = root.querySelector("[data-card-error]");

  function q(sel) { return root.querySelector(sel); }

  // Stripe's error codes → the cashier catalogue's (fraud-type declines stay generic).
  function category(error) {
    var code = (error && (error.decline_code || error.code)) || "";
    if (code === "insufficient_funds") return "insufficient_funds";
    if (code === "payment_intent_authentication_failure" || code === "authentication_required") {
      return "authentication_failed";
    }
    if (/^(incorrect_|invalid_|incomplete_)/.test(code) || code === "expired_card") {
      return code === "expired_card" ? "card_declined" : "card_invalid";
    }
    if (/^(fraudulent|lost_card|stolen_card|pickup_card|merchant_blacklist|restricted_card)$/
        .test(code)) return "payment_declined";
    if (error && error.type === "card_error") return "card_declined";
    return "payment_declined";
  }

  function working(on) {
    busy.hidden = !on;
    var pay = q("[data-card-pay]");
    if (pay) pay.disabled = on;
  }

  function fail(code) {
    var msg = q('[data-card-messages] [data-code="' + code + '"]') ||
      q('[data-card-messages] [data-code="payment_declined"]');
    working(false);
    q("[data-error-message]").textContent = msg.textContent;
    q("[data-error-next]").textContent = msg.dataset.next;
    box.hidden = false;
    box.setAttribute("data-error-code", code);
  }

  function done(intent) {
    if (intent && (intent.status === "succeeded" || intent.status === "processing")) {
      location.assign(d.doneUrl);
      return;
    }
    fail("payment_declined");
  }

  function outcome(result) {
    if (result.error) { fail(category(result.error)); return; }
    done(result.paymentIntent);
  }

  // Back from a 3-D Secure challenge that was not completed (or a reload after a decline):
  // the intent says why it still needs a payment method. Already paid: the live status poll
  // moves the page on once the gateway knows (no redirect from here, so never a loop).
  stripe.retrievePaymentIntent(d.clientSecret).then(function (r) {
    var intent = r.paymentIntent;
    if (intent && (intent.status === "succeeded" || intent.status === "processing")) {
      working(true);
    } else if (intent && intent.status === "requires_payment_method" &&
               intent.last_payment_error) {
      fail(category(intent.last_payment_error));
    }
  });

  if (!d.wallet) {
    var card = elements.create("card");
    card.mount(q("[data-card-element]"));
    var pay = q("[data-card-pay]");
    card.on("ready", function () { pay.disabled = false; });
    q("#card-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      box.hidden = true;
      working(true);
      var data = {payment_method: {card: card}};
      if (d.stripeReturnUrl) data.return_url = d.stripeReturnUrl;
      stripe.confirmCardPayment(d.clientSecret, data).then(outcome, function () {
        fail("payment_declined");
      });
    });
    return;
  }

  var options = JSON.parse(d.paymentRequest || "{}");
  var other = {apple_pay: "googlePay", google_pay: "applePay"}[d.wallet];
  options.disableWallets = ["link", other];
  var pr = stripe.paymentRequest(options);
  var flag = d.wallet === "apple_pay" ? "applePay" : "googlePay";
  pr.canMakePayment().then(function (can) {
    q("[data-wallet-checking]").hidden = true;
    if (!can || !can[flag]) { fail("wallet_unavailable"); return; }
    var mount = q("[data-wallet-button]");
    mount.hidden = false;
    elements.create("paymentRequestButton", {paymentRequest: pr}).mount(mount);
  });
  pr.on("paymentmethod", function (ev) {
    box.hidden = true;
    working(true);
    var data = {payment_method: ev.paymentMethod.id};
    if (d.stripeReturnUrl) data.return_url = d.stripeReturnUrl;
    stripe.confirmCardPayment(d.clientSecret, data, {handleActions: false}).then(function (r) {
      if (r.error) { ev.complete("fail"); outcome(r); return; }
      ev.complete("success");
      if (r.paymentIntent.status === "requires_action") {
        stripe.confirmCardPayment(d.clientSecret).then(outcome);
        return;
      }
      done(r.paymentIntent);
    });
  });
})();
