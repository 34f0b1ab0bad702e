"""The viewer's screens: each owns its panes and binds its own keys; the app switches between them."""
