"""Video out: H.264 recordings in fragmented MP4 (crash-safe), and the settings they share."""
