//! Tests of the aether binary: real FUSE mounts over a real afs-server on loopback.
