"""The change feed: what downstream systems must apply, told to exactly the clients concerned.

Events are written in the transaction of the change they describe (a
transactional outbox): a change that rolls back leaves no event, and a change
that commits always has its event. Events carry ids, purposes and field
names, never values: a consumer that needs values makes a gated read.
"""
