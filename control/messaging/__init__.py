"""Mass messaging under local quotas (rules Q-0 … Q-8): a ledger of what each customer and
group may still receive, checked and reserved in the store's write transaction (atomic across
server processes), mass sends pushed to WeCom and followed until WeCom reports each
recipient, with every refused recipient carrying its rule."""
