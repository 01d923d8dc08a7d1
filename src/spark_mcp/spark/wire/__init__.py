"""The Spark Connect wire protocol, for the gateway: what a message carries, read without running it.

messages.py   decoding a client's message safely (nesting bounded before protobuf parses it)
screen.py     what a plan ships (code), where its SQL hides, what Spark computes while planning
requests.py   the caller's identity on every request; the analysis requests made on its behalf
responses.py  answers on their way back: secrets masked, errors scrubbed, listings filtered
"""
