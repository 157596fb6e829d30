"""The dialer (rules D-1 … D-12): devices with SIM slots, seats and licences, campaigns,
the do-not-call list and calling hours; a scheduler whose every answer is one atomic
reservation in the store's write transaction; the device API; call records, roll-up
statistics and the incoming-call pop-up. Built on the store's SCRM tables
(``scrm_fast.storage.AppTxn``); ``control`` mounts its routes."""
