"""The run store (``.loop-runtime/runtime.db``): ``sqlite.RunStore`` composes one mixin per ``ports.store``
protocol (``leases``, ``ticks``, ``events``, ``ledger``, ``escalations``, ``schedule``, plus ``retention``)
over ``base.StoreBase``; ``schema`` holds the migrations and encodings, ``budget`` the ledger scopes."""
