"""Test hook: APPROXTRAIN_TEST_KILL_AT=POINT[,POINT...] kills this process with SIGKILL on reaching POINT.

Tests use it to stop a real process at an exact place (between two writes of a checkpoint,
at the start of an epoch) that a signal sent from outside could hit only by chance.
Points: "checkpoint:weights-written" (a new weights file in place, state.json not yet
updated), "epoch-begin:N" (before epoch N's first batch).
"""
import os
import signal

ENV = "APPROXTRAIN_TEST_KILL_AT"


def reached(point):
    wanted = os.environ.get(ENV)
    if wanted and point in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
