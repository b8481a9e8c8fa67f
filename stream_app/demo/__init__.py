"""The demo: the seed pages' scenarios played end to end on one laptop (``stream-app demo``).

Starts a local broker, creates the topics, runs the processor, the dispatcher, the webhook receiver
and the gateway simulator in one process, publishes one request per scenario and prints a table of
what happened to each message.
"""
