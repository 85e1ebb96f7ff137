"""The embedded AWS emulator (moto in server mode) and what closes its gaps on our templates."""
