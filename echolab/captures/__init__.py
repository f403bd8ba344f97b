"""Captures: reading them and cutting long ones into one capture per request. This layer imports
only ``echolab.errors``.

``rules`` (the rules of Echo traffic, :data:`~echolab.captures.rules.RULES`), ``pcapng`` (the one
block walker, for finished and growing files), ``reader`` (the streaming pcap/pcapng reader the
catalog, the collector and the features share), ``trace`` (``time,size,direction`` files),
``records`` (the TLS record layer over reassembled TCP streams);
the cut: ``spec`` (the ``--split`` setting), ``device`` and ``timeline`` (the device's traffic),
``cut`` (requests by quiet time or schedule), ``autocut`` (``--split auto``) and ``pieces``
(each request written as its own pcapng, raw records copied)."""
