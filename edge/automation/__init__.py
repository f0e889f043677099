"""Automation events out: a Redis Stream per site, abandoned carts, signed
webhooks (see ``edge.automation.service``)."""
