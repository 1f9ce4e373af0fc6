"""An order, created in a view's transaction with the job that confirms it."""

from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=50)
    confirmed = models.BooleanField(default=False)
