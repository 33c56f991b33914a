"""Test hooks, read here and nowhere else: stop a real process at an exact point of a run.

    APPROXTRAIN_TEST_KILL_AT=POINT[,POINT...]   SIGKILL this process on reaching POINT
    APPROXTRAIN_TEST_PAUSE_AT=POINT[,POINT...]  print "approxtrain-test: paused at POINT" to
                                                stderr and sleep (a test then sends a signal)

Points: "checkpoint:weights-written:N" (epoch N's weights file in place, state.json not yet
updated: the gap a crash could hit), "epoch-begin:N" (before epoch N's first batch).
A signal sent from outside could hit these places only by chance.
"""

import os
import signal
import sys
import time

KILL_AT, PAUSE_AT = "APPROXTRAIN_TEST_KILL_AT", "APPROXTRAIN_TEST_PAUSE_AT"
PAUSE_S = 120


def reached(point):
    if point in os.environ.get(KILL_AT, "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    if point in os.environ.get(PAUSE_AT, "").split(","):
        print(f"approxtrain-test: paused at {point}", file=sys.stderr, flush=True)
        # Short naps, not one sleep: a signal the kernel hands to another thread (TensorFlow's)
        # interrupts no sleep of this one; Python runs its handler here only between naps.
        deadline = time.monotonic() + PAUSE_S
        while time.monotonic() < deadline:
            time.sleep(0.05)
