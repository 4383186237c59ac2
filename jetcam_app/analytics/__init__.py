"""What happened in front of each camera: object tracks (ByteTrack), line crossings, zone occupancy and dwell time,
one set per source, as events and counts."""
