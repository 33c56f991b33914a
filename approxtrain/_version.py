"""The package version, in one place: setup.py reads this file as text (it cannot import the
package before the build), passes it to CMake (-DAPPROXTRAIN_VERSION, baked into the binaries),
and approxtrain.__version__ imports it."""

__version__ = "0.1.0"
