"""Captures: the one pcap/pcapng reader (``reader``) that the catalog, the collector and
the features share, and the cutting of long captures into one-request pieces (``split``),
which copies raw records into new pcapng files. This layer imports only ``echolab.errors``."""
