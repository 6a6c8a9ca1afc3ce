"""Record-retrieval vendors (a provider's designee): the order API v1 (``orders.py``, specified
in ``orders-v1.openapi.yaml``) and the router over every configured vendor (``router.py``)."""
