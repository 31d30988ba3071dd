"""PayPal (Orders v2) channel."""
