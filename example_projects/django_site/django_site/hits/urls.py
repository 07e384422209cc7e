from django.urls import path

from django_site.hits import views

app_name = "hits"
urlpatterns = [
    path("", views.index, name="index"),
    path("forget/", views.forget, name="forget"),
    path("api/hits/", views.api, name="api"),
]
