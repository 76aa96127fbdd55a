"""Audio-visual signals of a clip: 68-point landmarks, mouth/eye/head series, voice activity,
loudness and lip-sync (the ``av`` stage -> ``silver.av``)."""
