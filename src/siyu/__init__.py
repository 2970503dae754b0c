"""siyu: private-domain CRM and customer data platform for the WeChat ecosystem."""

__version__ = "0.1.0"
