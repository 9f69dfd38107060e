"""Notifications out: events found in the state, kept in its outbox until each channel has them.

`detect` (pure) turns what the state now says into events; `outbox` holds them in the state
file under the state lock; `send` delivers one to one channel; `courier` runs a round of
deliveries, for the daemon's announcer thread and for CLI runs alike.
"""
