"""Stripe: PaymentIntents for cards, Apple Pay and Google Pay."""
