"""The type of a customer's state, named once for the whole core.

A live profile is a plain dict (``State``): the value of the customers table (encoded by
``tables.state_codec``), whose fields ``domain.customer.new_state`` writes out and
``domain.migrate`` brings up to date. A redirect (``domain.linking.redirect``) and an erased
customer's marker (``domain.privacy``) are typed records (``domain.records``: ``Redirect``,
``Erased``; step 4 of docs/design/typed-state.md), stored as the dicts they were. ``Stored``
is any value of the table.
"""

from typing import Any

from touchstream.domain.records import Erased, Redirect

State = dict[str, Any]
Stored = State | Redirect | Erased
