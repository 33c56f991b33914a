"""Shared test setup.  Must not import TensorFlow: tests/cuda and the core
tests run on GPU machines that have no TF."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests import amsim_reference directly
