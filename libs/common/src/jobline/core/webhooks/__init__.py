"""Webhooks' pure rules: signing (Standard Webhooks), the address policy against SSRF, which
event types an endpoint receives, and when a failed delivery is tried again.

No I/O here: the relay's delivery loop (:mod:`jobline_relay.webhooks`) and the gateway's
routes call into these, and each rule is a plain unit test.
"""
