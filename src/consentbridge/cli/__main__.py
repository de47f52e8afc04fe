"""`python -m consentbridge.cli`."""

from consentbridge.cli import main

main()
