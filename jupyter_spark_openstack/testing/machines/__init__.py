"""Real machines for the OpenStack emulator (issue 11).

* :mod:`.image`: the Debian root filesystem the emulator's servers boot (systemd, the real
  cloud-init, Java 17), built with debootstrap from this machine's configured Debian mirror and
  cached outside the repository, rebuilt only when its recipe changes;
* :mod:`.cloudinit`: the real cloud-init of that image, run on a cloud-config
  (``cloud-init schema``), in a private mount namespace that never writes into the image.

Nothing here is imported by the package at run time; the modules need root and Linux.
"""
