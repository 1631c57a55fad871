import hashlib

import django.utils.timezone
from django.db import migrations, models


def fill_keys(apps, schema_editor):
    # Rows stored before this migration were unique by URL: their key is the URL's hash.
    NewsItem = apps.get_model("marketdata", "NewsItem")
    for item in NewsItem.objects.all().only("pk", "url"):
        item.key = hashlib.sha256(item.url.encode()).hexdigest()
        item.save(update_fields=["key"])


class Migration(migrations.Migration):
    dependencies = [
        ("marketdata", "0002_gap_backfill_attempts"),
    ]

    operations = [
        migrations.AddField(
            model_name="newsitem",
            name="assets",
            field=models.CharField(blank=True, db_index=True, max_length=200),
        ),
        migrations.AddField(
            model_name="newsitem",
            name="external_id",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AddField(
            model_name="newsitem",
            name="ingested_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="newsitem",
            name="key",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="newsitem",
            name="key",
            field=models.CharField(max_length=64, unique=True),
        ),
        migrations.AddField(
            model_name="newsitem",
            name="origin",
            field=models.CharField(
                choices=[("cryptopanic", "Cryptopanic"), ("rss", "Rss"), ("file", "File")],
                default="file",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="newsitem",
            name="sentiment_model",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="newsitem",
            name="subject",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AlterField(
            model_name="newsitem",
            name="url",
            field=models.URLField(blank=True, max_length=500),
        ),
    ]
