//! The only place that makes raw system calls (through rustix): peer credentials, dumpable, rlimits, mlock, umask.
