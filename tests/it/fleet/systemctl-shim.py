#!/usr/bin/env python3
# `systemctl start UNIT` for tests/it/fleet/ansible.rs, where no systemd runs: runs the unit's
# ExecStart= as systemd would, in a clean environment holding the unit's Environment= lines,
# with CREDENTIALS_DIRECTORY (`%d`) holding its credentials, and fails as systemctl does when
# it fails. The unit is read from SHIM_UNIT_DIR (the repository's examples/fleet/systemd/),
# with each (from, to) of SHIM_SUBST replaced in it (its paths made the test's).
import json
import os
import shlex
import subprocess
import sys

if len(sys.argv) != 3 or sys.argv[1] != "start":
    sys.exit("systemctl shim: only `start UNIT`")
unit = os.path.join(os.environ["SHIM_UNIT_DIR"], sys.argv[2])
subst = json.loads(os.environ["SHIM_SUBST"])
env = json.loads(os.environ["SHIM_ENV"])
creds = os.environ["SHIM_CREDS"]
execs = []
with open(unit) as f:
    for line in f:
        line = line.strip()
        for a, b in subst:
            line = line.replace(a, b)
        line = line.replace("%d", creds)
        if line.startswith("Environment="):
            k, v = line[len("Environment="):].split("=", 1)
            env[k] = v
        elif line.startswith("ExecStart="):
            execs.append(shlex.split(line[len("ExecStart="):]))
        elif line.startswith("LoadCredentialEncrypted="):
            name = line.split("=", 1)[1].split(":")[0]
            if not os.path.isfile(os.path.join(creds, name)):
                sys.exit(f"systemctl shim: no credential {name}")
env["CREDENTIALS_DIRECTORY"] = creds
with open(os.environ["SHIM_LOG"], "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
for argv in execs:
    if subprocess.run(argv, env=env, stdin=subprocess.DEVNULL).returncode != 0:
        sys.stderr.write(
            f"Job for {sys.argv[2]} failed because the control process exited with error code.\n"
        )
        sys.exit(1)
