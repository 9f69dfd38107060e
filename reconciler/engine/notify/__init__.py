"""Notifications out: events found in the state, kept in its outbox until each channel has them.

`detect` (pure) turns what the state now says into events; `courier` holds them in the
state's outbox (under the state lock) and runs a round of deliveries, for the daemon's
announcer thread and for CLI runs alike; `send` delivers one message to one channel.
"""
