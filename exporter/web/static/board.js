// Progressive enhancement only: the filters work without this script (plain GET form).
// With it, changing a select applies the filter at once.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("filters");
  if (!form) return;
  form.querySelectorAll("select").forEach((select) => {
    select.addEventListener("change", () => form.requestSubmit());
  });
});
