"""The type of a customer's state, named once for the whole core.

A plain dict: the value of the customers table (encoded by ``tables.state_codec``), whose
fields ``domain.customer.new_state`` writes out and ``domain.migrate`` brings up to date; a
redirect (``domain.linking.redirect``) and an erased customer's marker (``domain.privacy``) are
dicts too.
"""

from typing import Any

State = dict[str, Any]
