"""bmsfil's hardware-in-the-loop harness: replay recordings over CAN to a
target (in-process, emulated or real) and score the estimates it sends back."""
