"""Measure on a device over SSH: address parsing, the ssh transport, pushing files and the
runner, the device fingerprint. ``deploy device ...`` and ``deploy benchmark --device`` use it.

The host runs only the system ``ssh`` binary with argument lists; every remote command is a
``shlex.join`` of fixed words and quoted values, and the work on the device is done by small
fixed Python scripts (``deploy/device/scripts.py``) run with the device's own Python.
"""
