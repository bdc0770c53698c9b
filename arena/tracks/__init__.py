"""The built-in tracks, registered through the ``register_tracks`` hook like any other
(entry points ``track.robustness`` and ``track.generative``)."""
